"""The report's side-by-side rows with auto_LiRPA, from the benchmark's JSON."""

import json

from experiments.lipschitz import report


def test_autolirpa_rows_put_both_bounds_and_times_side_by_side(tmp_path):
    assert report.autolirpa_rows(tmp_path) == []
    side = {"mean_bound": 2.0, "cpu_per_point_s": 0.5}
    (tmp_path / "lipschitz_vs_autolirpa_x.json").write_text(
        json.dumps(
            {
                "model": "MNIST MLP",
                "points": 3,
                "eps": 0.01,
                "hidden_neurons": 40,
                "ours": {
                    "crown": {"mean_bound": 1.99, "cpu_per_point_s": 0.005},
                    "alpha_bab": {"mean_bound": 1.5, "cpu_per_point_s": 17.0},
                },  # fmt: skip
                "autolirpa": {"crown": side},
                "crown_ours_over_autolirpa_bound": {"max": 0.995},
                "crown_autolirpa_over_ours_cpu_time": 100.0,
            }
        )
    )
    rows = report.autolirpa_rows(tmp_path)
    assert len(rows) == 1  # alpha missing on one side: no alpha row; BaB needs the alpha bound
    (r,) = rows
    assert r.ours == "1.99 / 2" and "0.9950000" in r.note and "100x" in r.note
    assert "5.0 ms vs 500 ms" in r.note and r.data == "mnist_5k"
