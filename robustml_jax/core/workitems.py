"""Resumable work items: compute a named item once, save it atomically, reuse it when re-run.

Every experiment that does a list of independent pieces of work (ensemble members, expert
trajectories, zoo snapshots, bound evaluations at many points) uses :class:`WorkItems` so that a
run killed half-way resumes without losing finished items and never reads a half-written one::

    items = WorkItems(workdir / "members")
    for m in range(num_members):
        model = items.get(f"member_{m:02d}", lambda m=m: fit_member(..., key=fold_in(key, m)))

An item is complete exactly when its folder ``<directory>/<name>`` exists: it is written into a
temporary sibling first and renamed into place only after the save returned, so a kill during
the save leaves at most a stale temporary folder, which the next run deletes. By default items
are pytrees saved with orbax (``StandardCheckpointer``); pass ``save``/``load`` for other
formats (they read and write a folder).

Only the main process writes in a multi-process run; every process computes the item (items
are deterministic functions of their keys), so all processes return the same value.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import uuid
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["WorkItems", "load_pytree", "save_pytree"]

_TMP = ".tmp-"


def save_pytree(path: pathlib.Path, tree: Any) -> None:
    """Saves a pytree of arrays into the new folder ``path`` with orbax."""
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(pathlib.Path(path).absolute() / "item", tree)
    ckptr.wait_until_finished()
    ckptr.close()


def load_pytree(path: pathlib.Path, like: Any = None) -> Any:
    """Loads what :func:`save_pytree` saved; ``like`` gives the structure, shapes and dtypes."""
    ckptr = ocp.StandardCheckpointer()
    target = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        return ckptr.restore(pathlib.Path(path).absolute() / "item", target)
    finally:
        ckptr.close()


class WorkItems:
    """A folder of named, atomically saved work items.

    Args:
      directory: where the items live (created on first save).
      save: ``save(folder, value)`` writing ``value`` into the new folder ``folder``.
      load: ``load(folder) -> value``.
      like: with the default orbax format, a pytree giving the restored structure (else orbax
        restores plain dicts and arrays).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        save: Callable[[pathlib.Path, Any], None] | None = None,
        load: Callable[[pathlib.Path], Any] | None = None,
        like: Any = None,
    ):
        self.directory = pathlib.Path(directory).absolute()  # orbax needs absolute paths
        self._save = save or save_pytree
        self._load = load or (lambda p: load_pytree(p, like))
        self._cleaned = False

    def path(self, name: str) -> pathlib.Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad work item name {name!r}: use a plain, non-hidden folder name")
        return self.directory / name

    def done(self, name: str) -> bool:
        return self.path(name).is_dir()

    def names(self) -> list[str]:
        """The complete items, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p.name for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def load(self, name: str) -> Any:
        path = self.path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"work item {name!r} is not complete in {self.directory}")
        return self._load(path)

    def put(self, name: str, value: Any) -> Any:
        """Saves ``value`` as item ``name`` atomically (main process only) and returns it."""
        path = self.path(name)
        if jax.process_index() != 0:
            return value
        self._clean_stale()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{_TMP}{name}-{uuid.uuid4().hex[:8]}"
        try:
            self._save(tmp, value)
            if path.exists():  # another writer finished it first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return value

    def get(self, name: str, compute: Callable[[], Any]) -> Any:
        """The item ``name``: loaded if complete, else ``compute()``-d, saved and returned."""
        if self.done(name):
            return self.load(name)
        return self.put(name, compute())

    def _clean_stale(self) -> None:
        """Deletes temporary folders a killed run left (once per instance)."""
        if self._cleaned or not self.directory.is_dir():
            return
        for p in self.directory.iterdir():
            if p.name.startswith(_TMP):
                shutil.rmtree(p, ignore_errors=True)
        self._cleaned = True
