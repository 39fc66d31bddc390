"""Atomic writing of results, metrics logs and plots into a workdir.

Every write goes to a temporary file in the destination folder and is renamed into place with
``os.replace``, so a reader (or a crash) never sees a half-written ``results.json`` or PNG.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "MetricsLogger",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_results",
    "save_figure",
    "to_jsonable",
    "write_results",
]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """Opens a temp file beside ``path``; renames it onto ``path`` only if the block succeeds."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays (and nested containers) to plain JSON types.

    Non-finite floats become ``None`` so the output is strict JSON.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        arr = np.asarray(obj)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write a value of type {type(obj).__name__} to results.json: {obj!r}")


def write_results(
    workdir: str | os.PathLike, results: Mapping[str, Any], name: str = "results.json"
):
    """Atomically writes ``results`` (named metrics, nested dicts allowed) as JSON.

    Returns:
      The path written.
    """
    path = pathlib.Path(workdir) / name
    atomic_write_text(path, json.dumps(to_jsonable(results), indent=2, sort_keys=True) + "\n")
    return path


def read_results(workdir: str | os.PathLike, name: str = "results.json") -> dict:
    path = pathlib.Path(workdir) / name
    if not path.is_file():
        raise FileNotFoundError(f"no {name} in workdir {path.parent} (did the run finish?)")
    return json.loads(path.read_text(encoding="utf-8"))


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> pathlib.Path:
    """Atomically saves a matplotlib figure (format from the suffix).

    A figure made through pyplot is also closed (released from pyplot's registry); a plain
    ``Figure`` from :func:`robustml_jax.core.plotting.subplots` needs no closing.
    """
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


def _is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


class MetricsLogger:
    """Appends one JSON object per line to ``<workdir>/metrics.jsonl`` and TensorBoard events.

    Each record is written with a single ``write`` + ``fsync``, so a killed run leaves only
    complete lines. On resume, records at or beyond the resumed step are dropped first
    (``truncate_after``) so that the log matches an uninterrupted run.

    Numeric scalars also go to TensorBoard event files under ``<workdir>/tensorboard`` (tag
    ``<split>/<name>``, e.g. ``train/loss``), so ``tensorboard --logdir <workdir>`` shows a run as
    it goes. After ``truncate_after(step)`` the next event file starts with a purge step at the
    first kept record (TensorBoard drops every earlier event from that step on) and re-writes the
    kept records: a killed run's event writer may have lost events still in its queue, and
    TensorBoard then shows exactly ``metrics.jsonl``.

    In a multi-process run only process 0 writes (every process logs the same values).

    Args:
      workdir: the run's folder.
      name: the JSON-lines file name.
      tensorboard: also write TensorBoard events (main process only).
    """

    def __init__(
        self, workdir: str | os.PathLike, name: str = "metrics.jsonl", *, tensorboard: bool = True
    ):
        self.path = pathlib.Path(workdir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tensorboard = tensorboard
        self._tb = None
        self._purge_step: int | None = None
        self._replay: list[dict] = []

    def truncate_after(self, step: int) -> None:
        """Keeps only the records whose ``step`` is <= ``step`` (and drops torn lines)."""
        self._purge_step = step + 1
        if not _is_main_process() or not self.path.exists():
            return
        kept, self._replay = [], []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("step", -1) <= step:
                kept.append(line)
                self._replay.append(rec)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        steps = [int(r["step"]) for r in self._replay if "step" in r]
        self._purge_step = min([*steps, step + 1])

    def write(self, step: int, **metrics: Any) -> None:
        if not _is_main_process():  # every process computes the same metrics; one writes them
            return
        rec = {"step": int(step), **to_jsonable(metrics)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._write_tensorboard(int(step), rec)

    def _write_tensorboard(self, step: int, rec: Mapping[str, Any]) -> None:
        if not self._tensorboard:
            return
        if self._tb is None:
            from tensorboardX import SummaryWriter

            kwargs = {} if self._purge_step is None else {"purge_step": self._purge_step}
            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"), **kwargs)
            replay, self._replay = self._replay, []
            for old in replay:
                self._add_scalars(int(old.get("step", 0)), old)
        self._add_scalars(step, rec)
        self._tb.flush()

    def _add_scalars(self, step: int, rec: Mapping[str, Any]) -> None:
        split = rec.get("split", "")
        for k, v in rec.items():
            if k in ("step", "split") or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            self._tb.add_scalar(f"{split}/{k}" if split else k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x]
