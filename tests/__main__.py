"""The project's test command: ``python -m tests`` (lint, types, then the test suite).

Exits non-zero if any step fails; pytest's "no tests collected" (exit 5) is a failure too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy", "."],
    ["pytest", *sys.argv[1:]],
]


def main() -> int:
    for step in STEPS:
        print(f"$ {' '.join(step)}", flush=True)
        rc = subprocess.call([sys.executable, "-m", *step], cwd=ROOT)
        if rc != 0:
            print(f"FAILED ({rc}): {' '.join(step)}", flush=True)
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
