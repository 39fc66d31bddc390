"""Where the suite looks for data and where it caches decoded arrays.

This is the only place in the library that reads environment variables:

* ``ROBUSTML_DATA_DIR``: the data dir (real datasets, checkpoints). Defaults to ``../shared/data``
  next to the repository root when it exists, else ``~/robustml_data``.
* ``ROBUSTML_CACHE_DIR``: decoded-array cache. Defaults to ``~/.cache/robustml_jax``.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["cache_dir", "data_dir", "data_dir_candidates", "repo_root"]


def repo_root() -> pathlib.Path:
    """The repository root (the folder holding ``robustml_jax/``)."""
    return pathlib.Path(__file__).resolve().parents[2]


def data_dir_candidates() -> list[pathlib.Path]:
    """Every folder the data dir is looked for in, in order of preference."""
    env = os.environ.get("ROBUSTML_DATA_DIR")
    if env:
        return [pathlib.Path(env).expanduser()]
    out: list[pathlib.Path] = []
    for c in (
        repo_root().parent / "shared" / "data",
        pathlib.Path.cwd().parent / "shared" / "data",
        pathlib.Path.home() / "robustml_data",
    ):
        if c.absolute() not in out:
            out.append(c.absolute())
    return out


def data_dir() -> pathlib.Path:
    """The data dir: ``$ROBUSTML_DATA_DIR``, else the first candidate that exists.

    Returns a path even when none exists (the last candidate), so that callers can report
    where they looked and `fetch` can create it.
    """
    candidates = data_dir_candidates()
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def cache_dir() -> pathlib.Path:
    """Folder for decoded-array caches (created on demand)."""
    env = os.environ.get("ROBUSTML_CACHE_DIR")
    path = (
        pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "robustml_jax"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path
