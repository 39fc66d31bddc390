"""Command line for the dataset registry.

    python -m robustml_jax.data list               # what is registered, where looked, present?
    python -m robustml_jax.data fetch NAME [...]   # download NAME into the data dir (internet)
    python -m robustml_jax.data fetch NAME --base_url=http://mirror/  # from a mirror

(``robustml-data`` is the same command once the package is installed.) The library API lives in
:mod:`robustml_jax.core.datasets` and :mod:`robustml_jax.core.fetch`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

from robustml_jax.core import datasets, fetch, paths

_PROG = "python -m robustml_jax.data"
_COMMANDS = ("list", "fetch")

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "fetch: download into this folder (default: the data dir)."
)
_BASE_URL = flags.DEFINE_string(
    "base_url", None, "fetch: download from this mirror instead of the registered addresses."
)
_FORCE = flags.DEFINE_bool("force", False, "fetch: download again even when present.")
# The argparse spellings of earlier versions.
flags.DEFINE_alias("data-dir", "data_dir")
flags.DEFINE_alias("base-url", "base_url")


def _list() -> int:
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
        print(f"{'':24s} looked in: {'; '.join(d['looked_in'])}" + (f" [{extra}]" if extra else ""))
    return 0


def _fetch(names: Sequence[str]) -> int:
    status = 0
    for name in names:
        try:
            fetch.fetch(
                name, data_dir=_DATA_DIR.value, base_url=_BASE_URL.value, force=_FORCE.value
            )
        except (KeyError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
    return status


def command(args: Sequence[str]) -> int:
    """Runs ``list`` or ``fetch NAME...`` (flags already parsed); returns the exit status."""
    if not args or args[0] not in _COMMANDS:
        raise app.UsageError(f"give a command: {' or '.join(_COMMANDS)} (got {list(args)})")
    cmd, rest = args[0], list(args[1:])
    if cmd == "list":
        if rest:
            raise app.UsageError(f"list takes no arguments, got {rest}")
        return _list()
    if not rest:
        raise app.UsageError("fetch needs at least one dataset name")
    return _fetch(rest)


def main(argv: Sequence[str]) -> int:
    """The command line as a function: ``main(["fetch", "sst2", "--force"])`` (no program name).

    Parses ``argv`` with absl's flags, runs the command, and resets the flags afterwards.
    """
    try:
        args = flags.FLAGS([_PROG, *argv])
        return command(args[1:])
    finally:
        flags.FLAGS.unparse_flags()


def run() -> None:
    """The ``robustml-data`` console script and ``python -m robustml_jax.data``."""
    app.run(lambda argv: command(argv[1:]))


if __name__ == "__main__":
    run()
