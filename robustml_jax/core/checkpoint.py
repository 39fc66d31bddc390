"""Orbax checkpointing with resume, shared by every experiment.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact. A checkpoint that cannot be read raises
:class:`CheckpointError` naming the folder and step, and nothing on disk is deleted.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from robustml_jax.core.errors import UserError

__all__ = ["CheckpointError", "Checkpointer"]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint exists but cannot be restored into the expected structure."""


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` for one pytree of state.

    Args:
      directory: checkpoint folder (created if missing).
      max_to_keep: how many recent steps to keep.
      save_every: save when ``step % save_every == 0`` (``force=True`` overrides).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, save_every: int = 1):
        self.directory = pathlib.Path(directory).absolute()
        self.save_every = max(int(save_every), 1)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._mngr = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves ``state`` at ``step`` if due (or forced). Returns whether it saved."""
        if not force and step % self.save_every:
            return False
        if step in self.all_steps():
            return False
        self._mngr.save(step, args=ocp.args.StandardSave(state), force=True)
        self._mngr.wait_until_finished()
        return True

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores ``step`` (default: latest) into the structure, shapes and dtypes of ``target``.

        Raises:
          CheckpointError: the checkpoint is unreadable or does not match ``target``.
          FileNotFoundError: there is no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            return self._mngr.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises many types for unreadable or mismatched data
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} cannot be restored "
                f"({type(e).__name__}: {first}); it was left in place - move it away to resume "
                f"from an earlier step (present: {self.all_steps()})"
            ) from e

    def close(self) -> None:
        self._mngr.close()
