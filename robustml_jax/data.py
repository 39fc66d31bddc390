"""Command line for the dataset registry.

    python -m robustml_jax.data list               # what is registered, where looked, present?
    python -m robustml_jax.data fetch NAME [...]   # download NAME into the data dir (internet)
    python -m robustml_jax.data fetch NAME --base-url=http://mirror/  # from a mirror

The library API lives in :mod:`robustml_jax.core.datasets` and :mod:`robustml_jax.core.fetch`.
"""

from __future__ import annotations

import argparse
import sys

from robustml_jax.core import datasets, fetch, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustml_jax.data", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list registered datasets and whether they are present")
    p_fetch = sub.add_parser("fetch", help="download datasets into the data dir")
    p_fetch.add_argument("names", nargs="+")
    p_fetch.add_argument("--data-dir", default=None)
    p_fetch.add_argument("--base-url", default=None)
    p_fetch.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    if args.cmd == "list":
        print(f"data dir: {paths.data_dir()}")
        for name in datasets.list_datasets():
            d = datasets.describe(name)
            mark = "present" if d["present"] else "MISSING"
            extra = ", ".join(
                x
                for x in (
                    "fetchable" if d["fetchable"] else "",
                    f"tfds:{d['tfds']}" if d["tfds"] else "",
                )
                if x
            )
            print(f"{name:24s} {mark:8s} {d['description']}")
            print(
                f"{'':24s} looked in: {'; '.join(d['looked_in'])}"
                + (f" [{extra}]" if extra else "")
            )
        return 0
    status = 0
    for name in args.names:
        try:
            fetch.fetch(name, data_dir=args.data_dir, base_url=args.base_url, force=args.force)
        except (KeyError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
    return status


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
