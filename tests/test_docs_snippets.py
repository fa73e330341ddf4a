"""Every Python and TOML snippet of the README and the docs runs, page by page.

A page's Python blocks run in order in one namespace, the way a reader types them into
one session, with the reader's paths and servers replaced by real local ones (see
``docs_world``). Blocks written as an interactive session (``>>>``) are checked as
doctests. TOML blocks that are whole configuration files pass ``wedguard config
check``'s validation. The only block not run is the contract page's signature listing
(marked ``<!-- listing -->``), which ``test_contract_page`` checks instead.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import docs_world
from conftest_postgres import APP_PASSWORD, PostgresServer, postgres_server  # noqa: F401
from conftest_redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(<!-- listing -->\n)?```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(page: str, language: str) -> list[tuple[int, str, bool]]:
    """(line, code, listing) of each ``language`` block of ``page``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [
        (text[: m.start(3)].count("\n") + 1, m.group(3), bool(m.group(1)))
        for m in FENCE.finditer(text)
        if m.group(2) == language
    ]


PY_PAGES = [page for page in PAGES if blocks(page, "python")]


def test_the_pages_have_snippets() -> None:
    assert len(PY_PAGES) >= 15
    listings = [(p, line) for p in PAGES for line, _c, listing in blocks(p, "python") if listing]
    assert [p for p, _ in listings] == ["docs/contract.md"]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,  # noqa: F811 - the fixture imported above
) -> Iterator[dict[str, Any]]:
    """The servers the pages talk to, shared by the pages: HTTP, S3, Redis, and the
    PostgreSQL database ``app`` that the pages' ``pg_dump`` examples dump."""
    from conftest_redis import _server

    with postgres_server.admin("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone():
            conn.execute("CREATE DATABASE app OWNER app")
    pg = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "PGUSER": "app",
        "PGPASSWORD": APP_PASSWORD,
        "WEDGUARD_DB_DSN": postgres_server.dsn(),
    }
    with docs_world.http_server() as http, docs_world.s3_server() as s3_url:
        redis_iter = _server(tmp_path_factory)
        redis: RedisServer = next(redis_iter)
        try:
            yield {"http": http, "s3_url": s3_url, "redis": redis, "pg": pg}
        finally:
            with pytest.raises(StopIteration):
                next(redis_iter)


def _run(code: str, namespace: dict[str, Any], filename: str) -> None:
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, namespace, filename, filename, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        out: list[str] = []
        runner.run(test, out=out.append)
        assert runner.failures == 0, "".join(out)
        return
    compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(compiled, namespace))
    else:
        exec(compiled, namespace)


@pytest.mark.parametrize("page", PY_PAGES)
def test_python_snippets_run(
    page: str,
    world: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = world["redis"]
    redis.client().flushall()  # each page starts from an empty Redis, as a reader's would
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    monkeypatch.chdir(tmp_path)
    endpoint = world["s3_url"]
    for key, value in {
        "HOME": str(tmp_path),  # the example configuration's files live in ~
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "WEDGUARD_SLACK_URL": world["http"] + "/slack",
        "SLACK_WEBHOOK_URL": world["http"] + "/slack",
        "WEDGUARD_SMTP_PASSWORD": "not used: no mail is sent",
        "SMTP_PASSWORD": "not used: no mail is sent",
        **world["pg"],
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "wedguard.toml").write_text(
        (ROOT / "docs" / "wedguard.example.toml").read_text(encoding="utf-8")
    )
    namespace = docs_world.names(
        tmp_path,
        http=world["http"],
        s3=docs_world.s3_client(endpoint),
        redis_url=redis_url,
        redis_port=redis.port,
    )
    namespace["pytest"] = pytest
    namespace["__name__"] = "__docs__"
    sys.modules.pop("__docs__", None)
    for line, code, listing in blocks(page, "python"):
        if listing:
            continue
        local = docs_world.rewrite(
            code, tmp_path, http=world["http"], redis_url=redis_url, redis_port=redis.port
        )
        _run(local, namespace, f"{page}:{line}")
    # what a reader's script leaves to the end of the process, closed here: guards,
    # and the sinks and sources the pages built inline
    import gc

    import wedguard as wg

    owned: list[Any] = []
    for value in list(namespace.values()):
        if isinstance(value, wg.Guard):
            owned.extend([value, *value._sinks, *value._sources])
        elif type(value).__module__.startswith("wedguard"):
            owned.append(value)
    for value in reversed(owned):  # the last made first: they may deliver to the earlier
        close = getattr(value, "close", None)
        if callable(close):
            close()
    namespace.clear()
    # what a page made and dropped (a sink in a guard it replaced) a reader's process
    # closes at exit; here it is collected now, so it is not reported by a later test
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


TOML_BLOCKS = [(page, line, code) for page in PAGES for line, code, _l in blocks(page, "toml")]


def test_the_pages_have_configuration_snippets() -> None:
    assert len(TOML_BLOCKS) >= 10
    assert any(code.startswith("--8<--") for _p, _l, code in TOML_BLOCKS)  # the example file


@pytest.mark.parametrize(
    ("page", "line", "code"), TOML_BLOCKS, ids=[f"{p}:{n}" for p, n, _ in TOML_BLOCKS]
)
def test_configuration_snippets_are_valid(
    page: str, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every TOML block, alone in a file, is a configuration `wedguard config check`
    accepts (the secrets it names are in the environment, as a reader's would be)."""
    from wedguard.config import load_config

    include = re.fullmatch(r'--8<-- "([^"]+)"\s*', code)
    if include:  # a page that shows a whole file of the project
        code = (ROOT / include.group(1)).read_text(encoding="utf-8")
    for name in set(re.findall(r'_env = "([A-Z_]+)"', code)):
        value = (
            "redis://127.0.0.1:9/0" if "REDIS" in name
            else "postgresql://app@127.0.0.1:9/app" if "DSN" in name
            else "http://127.0.0.1:9/secret" if "URL" in name
            else "secret"
        )  # fmt: skip
        monkeypatch.setenv(name, value)
    path = tmp_path / "wedguard.toml"
    path.write_text(
        docs_world.rewrite(
            code,
            tmp_path,
            http="http://127.0.0.1:9",
            redis_url="redis://127.0.0.1:9/0",
            redis_port=9,
        )
    )
    load_config(path)
