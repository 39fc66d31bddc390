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
import re
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
_PROGRESS_EVERY = flags.DEFINE_float(
    "progress_every",
    30.0,
    "Seconds between progress lines while a paper runs (when stdout is not a terminal; a "
    "terminal gets a one-line ticker updated every second).",
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


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _estimate(p: Paper, out: pathlib.Path, scale: str) -> float | None:
    """The paper's wall time in the last recorded run at this scale (``rows/<paper>.json``)."""
    path = out / "rows" / f"{p.folder}.json"
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rep.get("scale", _report_scale(out)) != scale or rep.get("status") != "ok":
        return None
    wall = rep.get("wall_s", rep.get("runtime_s"))
    return float(wall) if isinstance(wall, int | float) and wall > 0 else None


def _report_scale(out: pathlib.Path) -> str | None:
    """The scale named in the last REPORT.md (rows written before rows recorded their scale)."""
    try:
        text = (out / "REPORT.md").read_text()
    except OSError:
        return None
    m = re.search(r"^- scale: (\w+)", text, re.MULTILINE)
    return m.group(1) if m else None


def _last_log_line(log: pathlib.Path, width: int) -> str:
    """The last thing the paper printed (the last segment of a progress bar's line), shortened."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [seg.strip() for line in tail.splitlines() for seg in line.split("\r")]
    lines = [x for x in lines if x]
    if not lines:
        return ""
    line = re.sub(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ", "", lines[-1])  # absl prefix
    return line if len(line) <= width else line[: max(width - 3, 0)] + "..."


class _Progress:
    """Progress of one paper: a ticker line on a terminal, else a plain line every ``every`` s."""

    def __init__(self, label: str, estimate: float | None, log: pathlib.Path, every: float):
        self.label, self.estimate, self.log, self.every = label, estimate, log, every
        self.tty = sys.stdout.isatty()
        self.last_print = time.perf_counter()
        self.width = shutil.get_terminal_size((100, 24)).columns

    def status(self, elapsed: float) -> str:
        if self.estimate is None:
            est = "no estimate"
        elif elapsed <= self.estimate:
            est = f"~{_duration(self.estimate)} last run, {elapsed / self.estimate:.0%}"
        else:
            est = f"over the last run's {_duration(self.estimate)}"
        return f"[reproduce] {self.label}: {_duration(elapsed)} ({est})"

    def tick(self, elapsed: float) -> None:
        now = time.perf_counter()
        if self.tty:
            line = self.status(elapsed)
            room = self.width - len(line) - 4
            tail = _last_log_line(self.log, room) if room > 10 else ""
            line = f"{line} | {tail}" if tail else line
            sys.stdout.write("\r\033[K" + line[: self.width - 1])
            sys.stdout.flush()
        elif now - self.last_print >= self.every:
            tail = _last_log_line(self.log, 80)
            print(self.status(elapsed) + (f" | {tail}" if tail else ""), flush=True)
            self.last_print = now

    def done(self) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def _run_paper(p: Paper, out: pathlib.Path, scale: str, timeout: int, label: str = "") -> dict:
    workdir = out / "workdirs" / p.folder
    estimate = _estimate(p, out, scale)
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
    label = label or f"{p.number} {p.folder}"
    est = f"about {_duration(estimate)} in the last run" if estimate else "no estimate"
    print(f"[reproduce] {label}: started ({est}); log: {workdir / 'log.txt'}", flush=True)
    t0 = time.perf_counter()
    log = workdir / "log.txt"
    progress = _Progress(label, estimate, log, _PROGRESS_EVERY.value)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=_ROOT, stdout=f, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.perf_counter() - t0
                    if elapsed > timeout:
                        proc.kill()
                        proc.wait()
                        rc = "timeout"
                        break
                    progress.tick(elapsed)
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): do not leave the paper running
                proc.kill()
                proc.wait()
            progress.done()
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
    rep["scale"] = scale
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
    print(f"[reproduce] {label}: {_status(rep)} in {_duration(runtime)}", flush=True)
    return rep


def _status(rep: dict | None) -> str:
    if rep is None:
        return "not implemented"
    return {"ok": "ok", "skipped": "skipped"}.get(rep.get("status"), "FAILED")


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def summary_table(papers: tuple[Paper, ...], reports: dict, rerun: set[str]) -> str:
    """One screen: paper, status, headline number (the report's first row), time."""
    header = ("paper", "status", "headline (first row of the report)", "ours", "paper", "time")
    rows = []
    for p in papers:
        rep = reports.get(p.folder)
        status = _status(rep) if rep is not None or not p.implemented else "not run"
        if rep is not None and p.folder not in rerun:
            status += " (kept)"
        metric = ours = theirs = time_s = ""
        if rep is not None and rep.get("status") == "ok" and rep.get("rows"):
            first = rep["rows"][0]
            metric, ours, theirs = first["metric"], _fmt(first["ours"]), _fmt(first["paper"])
        elif rep is not None:
            metric = rep.get("reason", "")
        if rep is not None and rep.get("wall_s") is not None:
            time_s = _duration(rep["wall_s"])
        rows.append(
            (
                f"{p.number:>2} {p.folder}",
                status,
                _clip(metric, 44),
                _clip(ours, 14),
                _clip(theirs, 10),
                time_s,
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()
    return "\n".join([head, "  ".join("-" * w for w in widths), *lines])


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
    to_run = [p for p in papers if p.implemented and (not _ONLY.value or p.folder in _ONLY.value)]
    known = [_estimate(p, out, _SCALE.value) for p in to_run]
    total_est = sum(e for e in known if e is not None)
    print(
        f"[reproduce] {len(to_run)} paper(s) at scale {_SCALE.value}"
        + (
            f"; about {_duration(total_est)} in the last recorded runs"
            + ("" if all(e is not None for e in known) else " (not counting papers never run)")
            if total_est
            else ""
        ),
        flush=True,
    )
    for p in papers:
        if not p.implemented:
            reports[p.folder] = None
            continue
        old = out / "rows" / f"{p.folder}.json"
        if p not in to_run:
            reports[p.folder] = json.loads(old.read_text()) if old.exists() else None
            continue
        label = f"[{to_run.index(p) + 1}/{len(to_run)}] {p.number} {p.folder}"
        reports[p.folder] = _run_paper(p, out, _SCALE.value, _TIMEOUT.value, label=label)
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
    rerun = {p.folder for p in to_run}
    print("\n" + summary_table(papers, reports, rerun) + "\n", flush=True)
    print(f"[reproduce] done in {_duration(total)}; the full report: {out / 'REPORT.md'}")


if __name__ == "__main__":
    app.run(main)
