"""The main job: runs every implemented paper's `small` config and writes reports/REPORT.md.

    python -m experiments.reproduce                  # CPU scale (small configs), < 30 min
    python -m experiments.reproduce --scale=full     # the GPU/TPU configs
    python -m experiments.reproduce --only=effrob,lipschitz
    python -m experiments.reproduce --resume         # finish an interrupted run

Each paper runs in its own subprocess and workdir (``reports/workdirs/<paper>``) through
``python -m experiments.<paper>.report``, so a crash in one is reported in its row and loses
nothing of the others. A paper with no ``report.py`` is listed as 'not implemented'; one whose
data is absent as 'skipped: <dataset> not found (how to get it)'. Every number in the report
comes from that run's ``report.json``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jax
from absl import app, flags

from robustml_jax.core.results import atomic_write_text

_SCALE = flags.DEFINE_enum("scale", "small", ["smoke", "small", "full"], "Config scale to run.")
_ONLY = flags.DEFINE_list("only", [], "Run only these papers (folder names); others keep old rows.")
_OUT = flags.DEFINE_string("out", "reports", "Report folder (REPORT.md, figures/, workdirs/).")
_TIMEOUT = flags.DEFINE_integer("timeout", 1500, "Per-paper time limit in seconds.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Keep each paper's workdir and resume it (default: start every paper afresh)."
)


_ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Paper:
    number: int
    folder: str  # experiments/<folder>/report.py
    title: str

    @property
    def module(self) -> str:
        return f"experiments.{self.folder}.report"

    @property
    def implemented(self) -> bool:
        return (_ROOT / pathlib.Path(*self.module.split("."))).with_suffix(".py").is_file()


PAPERS = (
    Paper(1, "effrob", "Effective robustness with multiple ID test sets"),
    Paper(2, "distill", "TESLA: constant-memory trajectory matching with soft labels"),
    Paper(3, "go_attack", "Adversarial states for AlphaZero-like Go agents"),
    Paper(4, "ot_robust", "Metric learning + OT against sensitivity and invariance attacks"),
    Paper(5, "promot", "ProMoT: prompt tuning, then model tuning"),
    Paper(6, "xmc", "Uncertainty quantification for tree-based XMC"),
    Paper(7, "elias", "ELIAS: end-to-end learned index for XMC"),
    Paper(8, "watermark", "Watermarking pre-trained LMs with multi-task backdoors"),
    Paper(9, "lipschitz", "Local Lipschitz constants by bound propagation (Clarke Jacobian)"),
    Paper(10, "optsearch", "ENOS: optimizer search by MCTS over update rules"),
)


def _run_paper(p: Paper, out: pathlib.Path, scale: str, timeout: int) -> dict:
    workdir = out / "workdirs" / p.folder
    if not _RESUME.value:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "report.json").unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        p.module,
        f"--workdir={workdir}",
        f"--scale={scale}",
    ]
    print(f"[reproduce] paper {p.number} ({p.folder}): {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    log = workdir / "log.txt"
    try:
        with open(log, "w") as f:
            proc = subprocess.run(
                cmd, cwd=_ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout
            )
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    runtime = time.perf_counter() - t0
    rep_path = workdir / "report.json"
    if rep_path.exists():
        rep = json.loads(rep_path.read_text())
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        why = f"timed out after {timeout}s" if rc == "timeout" else f"exit code {rc}"
        rep = {
            "status": "failed",
            "reason": f"{why}; {tail[0] if tail else 'no output'} (see {log})",
        }
    rep["wall_s"] = runtime
    # Copy plots next to REPORT.md so the report is self-contained.
    figs = []
    for rel in rep.get("plots", []):
        src = workdir / rel
        if src.exists():
            dst = out / "figures" / f"{p.folder}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            figs.append(str(dst.relative_to(out)))
    rep["figures"] = figs
    atomic_write_text(out / "rows" / f"{p.folder}.json", json.dumps(rep, indent=2))
    return rep


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _section(p: Paper, rep: dict | None) -> str:
    lines = [f"## {p.number}. {p.title}", ""]
    if rep is None:
        lines += ["not implemented", ""]
        return "\n".join(lines)
    status = rep.get("status")
    if status == "skipped":
        lines += [f"skipped: {rep['reason']}", ""]
        return "\n".join(lines)
    if status != "ok":
        lines += [f"**failed**: {rep.get('reason', 'unknown error')}", ""]
        return "\n".join(lines)
    lines += [
        f"Runtime: {rep.get('wall_s', rep.get('runtime_s', 0.0)):.0f} s",
        "",
        "| metric | ours | paper | data | scale | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        cells = [
            r["metric"],
            _fmt(r["ours"]),
            _fmt(r["paper"]),
            r["data"],
            r["scale"],
            r.get("note", ""),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    lines.append("")
    if rep.get("summary"):
        lines += [rep["summary"], ""]
    for fig in rep.get("figures", []):
        lines += [f"![{pathlib.Path(fig).stem}]({fig})", ""]
    return "\n".join(lines)


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv, papers: tuple[Paper, ...] = PAPERS):
    del argv
    out = pathlib.Path(_OUT.value)
    if not out.is_absolute():
        out = _ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reports: dict[str, dict | None] = {}
    for p in papers:
        if not p.implemented:
            reports[p.folder] = None
            continue
        old = out / "rows" / f"{p.folder}.json"
        if _ONLY.value and p.folder not in _ONLY.value:
            reports[p.folder] = json.loads(old.read_text()) if old.exists() else None
            continue
        reports[p.folder] = _run_paper(p, out, _SCALE.value, _TIMEOUT.value)
    total = time.perf_counter() - t0
    header = [
        "# robustml_jax: small-scale reproduction report",
        "",
        f"- generated: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {_commit()}",
        f"- jax {jax.__version__}; devices: {jax.device_count()}x {jax.devices()[0].device_kind}"
        f" ({jax.default_backend()}); host CPUs: {os.cpu_count()}",
        f"- scale: {_SCALE.value}; total wall time of this run: {total:.0f} s"
        + (f" (only {', '.join(_ONLY.value)} re-run)" if _ONLY.value else ""),
        "",
        "Every number below was produced by the run named in its row; 'paper' is the published "
        "value for comparison. Sections: one per paper of `../shared/PAPERS.md`.",
        "",
    ]
    body = [_section(p, reports[p.folder]) for p in papers]
    for sub, what in (("cpu", "long CPU runs"), ("gpu", "GPU runs")):
        recorded = sorted((out / sub).glob("*.json")) if (out / sub).is_dir() else []
        if recorded:
            body.append(
                f"## Recorded {what} (not re-run by this job)\n\n"
                + "\n".join(f"- `{g.relative_to(out)}`" for g in recorded)
                + "\n\nTheir commands, configs and numbers are in `BUILD_NOTES.md` and each "
                "paper's `NOTES.md`.\n"
            )
    atomic_write_text(out / "REPORT.md", "\n".join(header + body))
    print(f"[reproduce] wrote {out / 'REPORT.md'} in {total:.0f} s")


if __name__ == "__main__":
    app.run(main)
