"""The one command line of the generators under tools/: rewrite a generated file, or check that it is current.

python -m tools.<generator>          # rewrite the file
python -m tools.<generator> --check  # exit 1 (naming the file) when it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path


def sync(target: Path, text: str, generator: str, argv: list[str]) -> int:
    """Write ``text`` to ``target`` (printing its path), or with ``--check`` in ``argv`` only compare."""
    if "--check" in argv:
        if target.read_text() != text:
            print(f"{target} is stale: run python -m {generator}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(target)
    return 0
