"""The report's rows from the separate benchmark runs (exact vs tesla, streaming RSS)."""

import json

from experiments.distill import report


def test_benchmark_rows_quote_each_mode_and_both_sizes(tmp_path):
    assert report.benchmark_rows(tmp_path) == []  # no benchmark JSON: no rows
    run = {"iterations": 3, "cpu_s_per_iteration": 2.0, "loss": [1.0, 0.5], "eval_acc_std": 0.01}
    (tmp_path / "distill_exact_vs_tesla.json").write_text(
        json.dumps(
            {
                "settings": {
                    "dataset": "cifar10",
                    "width": 16,
                    "ipc": 1,
                    "syn_steps": 50,
                    "budget_cpu_s": 60.0,
                    "eval_models": 3,
                },  # fmt: skip
                "runs": {
                    "tesla_seed0": {**run, "mode": "tesla", "eval_acc_mean": 0.187},
                    "remat_seed0": {
                        **run,
                        "mode": "remat",
                        "eval_acc_mean": 0.190,
                        "probes": [{"cosine_x": 0.9}],
                    },  # fmt: skip
                },
            }
        )
    )
    (tmp_path / "distill_stream_rss.json").write_text(
        json.dumps(
            {
                "config": "stream_cpu",
                "runs": [
                    {"train_images": 8000, "peak_rss_mib": 1295.2},
                    {"train_images": 2000, "peak_rss_mib": 1413.8},
                ],  # fmt: skip
                "before_fix": {"runs": [{"peak_rss_mib": 1435.0}, {"peak_rss_mib": 1864.0}]},
            }
        )
    )
    rows = report.benchmark_rows(tmp_path)
    by_metric = {r.metric: r for r in rows}
    assert (
        by_metric["distilled test acc at equal CPU time, gradient=tesla (%)"].ours == "18.7 ± 1.0"
    )
    remat = by_metric["distilled test acc at equal CPU time, gradient=remat (%)"]
    assert (
        remat.ours == "19.0 ± 1.0"
        and "0.900" in remat.note
        and "final matching loss 0.500" in remat.note
    )
    rss = rows[-1]
    assert rss.metric.endswith("at 2,000 / 8,000 training images")  # sorted by size
    assert rss.ours == "1414 / 1295" and "before the fix: 1435 / 1864" in rss.note
