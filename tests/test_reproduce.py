"""The main job: per-paper subprocesses, statuses, and the REPORT.md layout."""

from __future__ import annotations

import dataclasses

from experiments import reproduce


@dataclasses.dataclass(frozen=True)
class _FakePaper(reproduce.Paper):
    @property
    def module(self):
        return "tests.core.fake_report"

    @property
    def implemented(self):
        return self.folder != "fake_missing"


PAPERS = (
    _FakePaper(1, "fake_ok", "Works"),
    _FakePaper(2, "fake_skip", "Data absent"),
    _FakePaper(3, "fake_crash", "Crashes"),
    _FakePaper(4, "fake_missing", "Not written yet"),
)


def _reproduce(*args, papers=PAPERS):
    reproduce.flags.FLAGS(["reproduce", *args])
    try:
        reproduce.main([], papers=papers)
    finally:
        reproduce.flags.FLAGS.unparse_flags()


def _summary(stdout: str) -> dict[str, str]:
    """The summary table's lines by paper folder."""
    lines = stdout.split("headline (first row of the report)", 1)[1].splitlines()[2:]
    return {ln.split()[1]: ln for ln in lines if ln.strip() and not ln.startswith("[")}


def test_report_has_ok_skipped_failed_and_not_implemented_rows(tmp_path, capsys):
    _reproduce(f"--out={tmp_path}", "--scale=smoke")
    stdout = capsys.readouterr().out
    text = (tmp_path / "REPORT.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]}
    assert "| digits rows | 1797 | - | sklearn digits | smoke |" in sections["1. Works"]
    assert "![fake_ok_curve](figures/fake_ok_curve.png)" in sections["1. Works"]
    assert (tmp_path / "figures" / "fake_ok_curve.png").exists()
    assert "skipped: cifar10 not found (fetch it)" in sections["2. Data absent"]
    assert "**failed**: RuntimeError: boom in the paper's code" in sections["3. Crashes"]
    assert "not implemented" in sections["4. Not written yet"]
    assert "- commit:" in text and "jax " in text and "total wall time" in text

    # Progress lines and the one-screen summary: status, the first row's numbers, the time.
    assert "[reproduce] [1/3] 1 fake_ok: started (no estimate)" in stdout
    summary = _summary(stdout)
    assert summary.keys() == {"fake_ok", "fake_skip", "fake_crash", "fake_missing"}
    assert summary["fake_ok"].split()[2:6] == ["ok", "digits", "rows", "1797"]
    assert summary["fake_ok"].rstrip().endswith("s")
    assert "skipped" in summary["fake_skip"] and "cifar10 not found" in summary["fake_skip"]
    assert "FAILED" in summary["fake_crash"] and "RuntimeError: boom" in summary["fake_crash"]
    assert "not implemented" in summary["fake_missing"]
    assert stdout.rstrip().endswith(f"the full report: {tmp_path / 'REPORT.md'}")

    # A second run estimates from the first and keeps the rows of the papers it does not re-run.
    _reproduce(f"--out={tmp_path}", "--scale=smoke", "--only=fake_ok")
    stdout = capsys.readouterr().out
    assert "[reproduce] [1/1] 1 fake_ok: started (about " in stdout
    summary = _summary(stdout)
    assert summary["fake_ok"].split()[2] == "ok"
    assert "(kept)" in summary["fake_skip"] and "(kept)" not in summary["fake_ok"]
    # ... but not from a run at another scale.
    _reproduce(f"--out={tmp_path}", "--scale=small", "--only=fake_skip")
    assert "fake_skip: started (no estimate)" in capsys.readouterr().out


def test_progress_lines_show_elapsed_estimate_and_what_the_paper_prints(tmp_path, capsys):
    log = tmp_path / "log.txt"
    log.write_text(
        "I1130 21:13:17.029913 139651556363136 train.py:10] loading data\n"
        "train:  10%|#  | 4/40 [00:01<00:09]\rtrain:  50%|#####  | 20/40 [00:05<00:05]\r"
    )
    prog = reproduce._Progress("[1/2] 9 lipschitz", 200.0, log, every=0.0)
    prog.tty = False
    prog.tick(50.0)
    prog.estimate = None
    prog.tick(75.0)
    log.write_text("I1130 21:13:17.029913 139651556363136 train.py:10] loading data\n")
    prog.estimate = 60.0
    prog.tick(125.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[reproduce] [1/2] 9 lipschitz: 50s (~3m20s last run, 25%) | "
        "train:  50%|#####  | 20/40 [00:05<00:05]",
        "[reproduce] [1/2] 9 lipschitz: 1m15s (no estimate) | "
        "train:  50%|#####  | 20/40 [00:05<00:05]",
        "[reproduce] [1/2] 9 lipschitz: 2m05s (over the last run's 1m00s) | loading data",
    ]
