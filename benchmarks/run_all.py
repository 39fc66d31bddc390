"""Runs every benchmark module in benchmarks/ (each writes JSON into benchmarks/results/).

python -m benchmarks.run_all            # all
python -m benchmarks.run_all distill    # only modules whose name starts with 'distill'
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

from absl import app


def main(argv: list[str]) -> int:
    """``argv[1:]``: name prefixes of the modules to run (none: all)."""
    prefixes = argv[1:]
    here = pathlib.Path(__file__).resolve().parent
    mods = sorted(p.stem for p in here.glob("*.py") if p.stem not in ("__init__", "run_all"))
    if prefixes:
        mods = [m for m in mods if any(m.startswith(a) for a in prefixes)]
        if not mods:
            raise app.UsageError(f"no benchmark module starts with {prefixes}")
    failed = []
    for m in mods:
        print(f"[bench] {m}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"benchmarks.{m}"], cwd=here.parent).returncode
        if rc:
            failed.append(m)
    print(f"[bench] done; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
