"""Accuracy tables: models x test sets, with the model's training-distribution group.

Shapes: M = models, K = ID test sets, J = OOD test sets.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from robustml_jax.core.results import atomic_write_text

__all__ = ["AccuracyTable", "read_accuracy_csv", "table_to_csv"]


@dataclasses.dataclass(frozen=True)
class AccuracyTable:
    """Accuracies (fractions) of M models.

    Attributes:
      names: M model names.
      groups: M training-distribution labels (used to colour plots and average ER).
      id_names: K ID test-set names; id_acc: [M, K].
      ood_names: J OOD test-set names; ood_acc: [M, J] (NaN: not measured).
      clusters: optional M labels of dependent models (e.g. snapshots of one training run),
        resampled together by the bootstrap.
    """

    names: tuple[str, ...]
    groups: tuple[str, ...]
    id_names: tuple[str, ...]
    id_acc: np.ndarray
    ood_names: tuple[str, ...]
    ood_acc: np.ndarray
    clusters: tuple[str, ...] | None = None

    def __post_init__(self):
        m = len(self.names)
        if len(self.groups) != m:
            raise ValueError(f"{len(self.groups)} groups for {m} models")
        if self.clusters is not None and len(self.clusters) != m:
            raise ValueError(f"{len(self.clusters)} clusters for {m} models")
        if self.id_acc.shape != (m, len(self.id_names)):
            raise ValueError(
                f"id_acc has shape {self.id_acc.shape}, want ({m}, {len(self.id_names)})"
            )
        if self.ood_acc.shape != (m, len(self.ood_names)):
            raise ValueError(
                f"ood_acc has shape {self.ood_acc.shape}, want ({m}, {len(self.ood_names)})"
            )

    @property
    def num_models(self) -> int:
        return len(self.names)

    def group_names(self) -> list[str]:
        """Distinct groups in first-seen order."""
        return list(dict.fromkeys(self.groups))

    def select(self, mask: np.ndarray) -> AccuracyTable:
        mask = np.asarray(mask, bool)
        return dataclasses.replace(
            self,
            names=tuple(n for n, k in zip(self.names, mask, strict=True) if k),
            groups=tuple(g for g, k in zip(self.groups, mask, strict=True) if k),
            id_acc=self.id_acc[mask],
            ood_acc=self.ood_acc[mask],
            clusters=None
            if self.clusters is None
            else tuple(c for c, k in zip(self.clusters, mask, strict=True) if k),
        )


def _split(cols: str | Sequence[str]) -> list[str]:
    if isinstance(cols, str):
        return [c.strip() for c in cols.split(",") if c.strip()]
    return list(cols)


def read_accuracy_csv(
    path: str | os.PathLike,
    *,
    id_columns: str | Sequence[str],
    ood_columns: str | Sequence[str],
    group_column: str | None = None,
    name_column: str | None = None,
    cluster_column: str | None = None,
    scale: float = 1.0,
) -> AccuracyTable:
    """Reads a CSV with one row per model.

    Args:
      path: the CSV file (header row required).
      id_columns / ood_columns: column names (a list or a comma-separated string).
      group_column: training-distribution column (default: every model in group "all").
      name_column: model-name column (default: "row <i>").
      cluster_column: optional column of training-run (cluster) labels for the bootstrap.
      scale: divide accuracies by this (100 for percentages).

    A blank cell (or ``nan``/``NA``) is an accuracy that was not measured: it becomes NaN, and
    the analysis leaves that model out of the fits that need the cell.

    Raises:
      ValueError: a named column is missing, a cell is not a number, or nothing is selected.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"accuracy CSV not found: {path}")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    ids, oods = _split(id_columns), _split(ood_columns)
    if not ids or not oods:
        raise ValueError("need at least one ID column and one OOD column")
    wanted = ids + oods + [c for c in (group_column, name_column, cluster_column) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; the CSV has columns {header}")
    if not rows:
        raise ValueError(f"{path.name} has no data rows")

    def num(row_i, row, col):
        cell = (row.get(col) or "").strip()
        if cell.lower() in ("", "nan", "na", "n/a"):
            return float("nan")
        try:
            return float(cell) / scale
        except ValueError:
            raise ValueError(
                f"{path.name}: row {row_i + 2}, column '{col}': '{cell}' is not a number"
            ) from None

    id_acc = np.array([[num(i, r, c) for c in ids] for i, r in enumerate(rows)], np.float64)
    ood_acc = np.array([[num(i, r, c) for c in oods] for i, r in enumerate(rows)], np.float64)
    names = tuple(r[name_column] if name_column else f"row {i}" for i, r in enumerate(rows))
    groups = tuple(r[group_column] if group_column else "all" for r in rows)
    clusters = tuple(r[cluster_column] for r in rows) if cluster_column else None
    return AccuracyTable(names, groups, tuple(ids), id_acc, tuple(oods), ood_acc, clusters)


def table_to_csv(table: AccuracyTable, path: str | os.PathLike) -> pathlib.Path:
    """Writes ``table`` as a CSV that :func:`read_accuracy_csv` reads back (atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = ["cluster"] if table.clusters is not None else []
    w.writerow(["model", "group", *extra, *table.id_names, *table.ood_names])
    for i in range(table.num_models):
        vals = [*table.id_acc[i], *table.ood_acc[i]]
        cl = [table.clusters[i]] if table.clusters is not None else []
        cells = ("" if not np.isfinite(v) else f"{v:.6f}" for v in vals)
        w.writerow([table.names[i], table.groups[i], *cl, *cells])
    path = pathlib.Path(path)
    atomic_write_text(path, buf.getvalue())
    return path
