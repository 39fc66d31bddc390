"""The markdown table of a hand-made results dict (no data, no model: milliseconds)."""

from experiments.watermark.table import finished_runs, markdown_table


def _ms(xs):
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return {"mean": m, "std": sd, "per_seed": list(xs)}


def _variant(acc, wesr, pv, s="rare"):
    return {
        "trigger_set": s,
        "acc": _ms(acc),
        "wesr": _ms(wesr),
        "pvalue": {"max": max(pv), "per_seed": pv},
        "detected_at_alpha": sum(p < 1e-3 for p in pv),
        "seeds": len(acc),
    }


RESULTS = {
    "tasks": {
        "mr": {
            "clean": {
                "acc": _ms([0.68, 0.70, 0.66]),
                "wesr_rare": _ms([0.05, 0.07, 0.06]),
                "wesr_common": _ms([0.2, 0.1, 0.3]),
                "false_positives": {
                    "rare": {"loo_pvalues": [0.3, 0.02, 0.9], "rejected_at_0.05": 1, "models": 3},
                    "common": {
                        "loo_pvalues": [0.5, 0.0005, 0.9],
                        "rejected_at_0.05": 1,
                        "models": 3,
                    },
                },
            },
            "reference": {
                "acc": _ms([0.72, 0.74]),
                "seeds": 2,
                "wesr_rare": _ms([0.02, 0.03]),
                "wesr_common": _ms([0.1, 0.2]),
                "pvalues_rare": [0.9, 0.8],
                "pvalues_common": [0.04, 0.6],
                "rejected_rare_at_0.05": 0,
                "rejected_common_at_0.05": 1,
            },
            "variants": {  # JSON sorts keys: the table restores the configs' order
                "rare_multitask": _variant(
                    [0.71, 0.70, 0.75], [1.0, 0.9, 0.95], [1e-6, 2e-4, 3e-5]
                ),
                "common_multitask": _variant([0.73], [0.5], [0.01], "common"),
            },
            "attacks": {"prune": _variant([0.7], [0.8], [1e-5])},
        }
    }
}


def test_markdown_table_rows_paired_differences_and_false_positives():
    text = markdown_table(RESULTS, 1e-3, "rare_multitask")
    rows = [r for r in text.splitlines() if r.startswith("| mr |")]
    assert [r.split(" | ")[1] for r in rows] == [
        "clean MiniLM (test's reference models)",
        "multi-task reference, no triggers",
        "rare_multitask",
        "common_multitask",
        "rare_multitask, removal: prune",
    ]
    rare = rows[2].split(" | ")
    # accuracy 72.0 ± 2.6; paired with the reference's 2 seeds: -1, -4 -> -2.5 ± 2.1
    assert rare[3] == "72.0 ± 2.6" and rare[4] == "-2.5 ± 2.1 (2 paired)"
    # paired with the clean models' 3 seeds: +3, 0, +9 -> +4.0 ± 4.6
    assert rare[5] == "+4.0 ± 4.6 (3 paired)"
    assert rare[6] == "95.0 ± 5.0" and rare[7] == "100.0 / 90.0 / 95.0"
    assert rare[8] == "6.0 ± 1.0" and rare[9] == "2.0e-04" and rare[10] == "3/3 |"
    common = rows[3].split(" | ")
    assert common[3] == "73.0" and common[4] == "+1.0 (1 paired)" and common[10] == "0/1 |"
    assert "20.0 ± 10.0" in common[8]
    # false positives: clean 2/6 at 0.05 and 1/6 at 1e-3; reference 1/4 and 0/4
    assert "leave-one-out: 2/6 / 1/6" in text and "clean models): 1/4 / 0/4" in text


def test_finished_runs_parses_item_names(tmp_path):
    for name in ("mr__clean__none__s0", "blitzer_electronics__rare_multitask__high_lr__s2"):
        (tmp_path / "items" / "runs" / name).mkdir(parents=True)
        (tmp_path / "items" / "runs" / name / "run.json").write_text('{"eval": 1}')
    (tmp_path / "items" / "runs" / ".tmp-half").mkdir()  # a save cut short: ignored
    assert finished_runs(tmp_path) == {
        ("mr", "clean", "none", 0): {"eval": 1},
        ("blitzer_electronics", "rare_multitask", "high_lr", 2): {"eval": 1},
    }
