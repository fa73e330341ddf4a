"""``python -m wedguard``: the same as the ``wedguard`` command."""

from __future__ import annotations

import sys

from wedguard.cli import main

if __name__ == "__main__":
    sys.exit(main())
