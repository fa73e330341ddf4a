"""docs/contract.md is the contract: every name and import written there exists."""

from __future__ import annotations

from pathlib import Path

import wedguard as wg

# ----------------------------------------------------------------- the page itself

CONTRACT_PAGE = Path(__file__).resolve().parent.parent / "docs" / "contract.md"


def _contract_code() -> str:
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    blocks = text.split("```python")[1:]
    return "\n".join(block.split("```")[0] for block in blocks)


def test_every_wg_name_on_the_contract_page_exists() -> None:
    """Every ``wg.Name`` written on docs/contract.md is an attribute of the package."""
    import re

    names = set(re.findall(r"\bwg\.([A-Za-z_]\w*)", _contract_code()))
    assert len(names) > 20, names
    missing = sorted(n for n in names if not hasattr(wg, n))
    assert missing == [], missing


def test_every_import_on_the_contract_page_works() -> None:
    """Every ``from wedguard... import ...`` line of docs/contract.md imports."""
    import importlib
    import re

    lines = re.findall(r"^from (wedguard[\w.]*) import ([\w, ]+)", _contract_code(), re.M)
    assert len(lines) >= 5, lines
    for module, names in lines:
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(mod, name), f"{module}.{name}"
