"""The contract between each paper's report entry point and ``experiments/reproduce.py``.

A paper takes part in the main job by providing ``experiments/<paper>/report.py`` whose
``run(workdir, scale) -> PaperReport`` runs the paper's ``small`` (or ``full``) config(s) in
``workdir`` and returns table rows built from the run's ``results.json``. Calling
``report_main(run)`` under ``if __name__ == "__main__"`` gives it the command line that
``reproduce.py`` runs in a subprocess::

    python -m experiments.<paper>.report --workdir=DIR --scale=small

which writes ``DIR/report.json``. Missing data is reported as ``skipped`` with the dataset's own
how-to-get message; any other exception is reported as ``failed`` with its message. Numbers in
rows must come from the run: ``paper`` holds the paper's published value (or ``None``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from robustml_jax.core.datasets import DatasetNotFoundError
from robustml_jax.core.results import read_results, write_results

__all__ = ["PaperReport", "Row", "report_main"]


@dataclasses.dataclass
class Row:
    """One line of a paper's table in REPORT.md.

    Attributes:
      metric: what is measured (with units, e.g. "CIFAR-10 IPC10 test acc (%)").
      ours: our value (a number or short string), computed by the run.
      paper: the paper's value for the same metric, or None when the paper gives none.
      data: dataset(s) used.
      scale: what scale we ran at (models, steps, subset sizes).
      note: optional caveat.
    """

    metric: str
    ours: Any
    paper: Any
    data: str
    scale: str
    note: str = ""


@dataclasses.dataclass
class PaperReport:
    rows: list[Row]
    plots: list[str] = dataclasses.field(default_factory=list)  # paths relative to the workdir
    summary: str = ""  # one paragraph: does the paper's claim hold at this scale?


def report_main(run: Callable[[pathlib.Path, str], PaperReport], argv: list[str] | None = None):
    """The absl entry point of a paper's ``report.py``: ``--workdir`` and ``--scale``."""
    from absl import app, flags

    workdir_flag = flags.DEFINE_string("workdir", None, "Folder for the paper's runs.")
    scale_flag = flags.DEFINE_enum("scale", "small", ["smoke", "small", "full"], "Config scale.")
    flags.mark_flag_as_required("workdir")

    def main(args: list[str]) -> None:
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {args[1:]}")
        sys.exit(_report(run, pathlib.Path(workdir_flag.value), scale_flag.value))

    app.run(main, argv=argv)


def _report(run: Callable[[pathlib.Path, str], PaperReport], workdir: pathlib.Path, scale: str):
    """Runs ``run`` and writes ``report.json``; returns the exit status."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out: dict[str, Any]
    try:
        rep = run(workdir, scale)
        out = {
            "status": "ok",
            "rows": [dataclasses.asdict(r) for r in rep.rows],
            "plots": rep.plots,
            "summary": rep.summary,
        }
    except DatasetNotFoundError as e:
        out = {"status": "skipped", "reason": f"{e.name} not found ({e.how})"}
    except Exception as e:  # reported in the paper's row; the other papers still run
        traceback.print_exc()
        out = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    out["runtime_s"] = time.perf_counter() - t0
    write_results(workdir, out, name="report.json")
    return 0 if out["status"] != "failed" else 1


def results_of(workdir: pathlib.Path) -> dict:
    """The ``results.json`` a paper's run wrote (re-exported for report modules)."""
    return read_results(workdir)
