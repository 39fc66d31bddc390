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


def test_report_has_ok_skipped_failed_and_not_implemented_rows(tmp_path):
    papers = (
        _FakePaper(1, "fake_ok", "Works"),
        _FakePaper(2, "fake_skip", "Data absent"),
        _FakePaper(3, "fake_crash", "Crashes"),
        _FakePaper(4, "fake_missing", "Not written yet"),
    )
    reproduce.flags.FLAGS(["reproduce", f"--out={tmp_path}", "--scale=smoke"])
    try:
        reproduce.main([], papers=papers)
    finally:
        reproduce.flags.FLAGS.unparse_flags()
    text = (tmp_path / "REPORT.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]}
    assert "| digits rows | 1797 | - | sklearn digits | smoke |" in sections["1. Works"]
    assert "![fake_ok_curve](figures/fake_ok_curve.png)" in sections["1. Works"]
    assert (tmp_path / "figures" / "fake_ok_curve.png").exists()
    assert "skipped: cifar10 not found (fetch it)" in sections["2. Data absent"]
    assert "**failed**: RuntimeError: boom in the paper's code" in sections["3. Crashes"]
    assert "not implemented" in sections["4. Not written yet"]
    assert "- commit:" in text and "jax " in text and "total wall time" in text
