"""Accuracy CSVs: round trip and clear errors."""

import numpy as np
import pytest

from robustml_jax import effrob


def _table():
    return effrob.AccuracyTable(
        names=("a", "b", "c", "d"),
        groups=("x", "x", "y", "y"),
        id_names=("id1", "id2"),
        id_acc=np.array([[0.7, 0.6], [0.8, 0.65], [0.6, 0.8], [0.65, 0.85]]),
        ood_names=("ood",),
        ood_acc=np.array([[0.5], [0.6], [0.55], [0.6]]),
    )


def test_csv_round_trip(tmp_path):
    t = _table()
    effrob.table_to_csv(t, tmp_path / "t.csv")
    r = effrob.read_accuracy_csv(
        tmp_path / "t.csv",
        id_columns="id1,id2",
        ood_columns=["ood"],
        group_column="group",
        name_column="model",
    )
    assert r.names == t.names and r.groups == t.groups and r.id_names == t.id_names
    np.testing.assert_allclose(r.id_acc, t.id_acc)
    np.testing.assert_allclose(r.ood_acc, t.ood_acc)
    assert r.group_names() == ["x", "y"]
    assert r.select(np.array([True, False, True, False])).names == ("a", "c")


def test_percentages_with_scale(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("m,i,o\nA,70,50\nB,80,60\nC,90,75\n")
    r = effrob.read_accuracy_csv(p, id_columns="i", ood_columns="o", name_column="m", scale=100)
    np.testing.assert_allclose(r.id_acc[:, 0], [0.7, 0.8, 0.9])
    assert r.groups == ("all", "all", "all")
    raw = effrob.read_accuracy_csv(p, id_columns="i", ood_columns="o")
    with pytest.raises(ValueError, match="not percentages"):
        effrob.fit_effective_robustness(raw.id_acc, raw.ood_acc[:, 0])


def test_missing_column_names_it(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("m,i,o\nA,0.7,0.5\n")
    with pytest.raises(
        ValueError, match=r"missing column\(s\) \['ood'\].*columns \['m', 'i', 'o'\]"
    ):
        effrob.read_accuracy_csv(p, id_columns="i", ood_columns="ood")


def test_non_numeric_cell_and_missing_file(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("i,o\n0.7,0.5\nabc,0.4\n")
    with pytest.raises(ValueError, match=r"row 3, column 'i': 'abc' is not a number"):
        effrob.read_accuracy_csv(p, id_columns="i", ood_columns="o")
    with pytest.raises(FileNotFoundError, match="not found"):
        effrob.read_accuracy_csv(tmp_path / "nope.csv", id_columns="i", ood_columns="o")


def test_table_shape_checks():
    with pytest.raises(ValueError, match="id_acc has shape"):
        effrob.AccuracyTable(("a",), ("g",), ("i",), np.zeros((2, 1)), ("o",), np.zeros((1, 1)))


def test_analysis_writes_fits_table_and_plots(tmp_path):
    # OOD accuracy exactly on a logit plane of the two ID accuracies.
    t = _table()
    z = np.log(t.id_acc / (1 - t.id_acc))
    ood = 1 / (1 + np.exp(-(0.2 + 0.7 * z[:, 0] + 0.4 * z[:, 1])))
    t = effrob.AccuracyTable(t.names, t.groups, t.id_names, t.id_acc, ("ood",), ood[:, None])
    a = effrob.analyze_table(t)
    assert list(a["fits"]["ood"]) == ["single:id1", "single:id2", "multi:id1+id2"]
    # The two-ID fit recovers the plane (every model's ER 0 up to rounding) only if it really
    # uses both ID sets; each single-ID fit leaves some ER.
    er = a["er"]["ood"]
    np.testing.assert_allclose(er["multi:id1+id2"], 0.0, atol=1e-4)
    np.testing.assert_allclose(a["fits"]["ood"]["multi:id1+id2"]["coef"], [0.7, 0.4], atol=1e-3)
    for single in ("single:id1", "single:id2"):
        assert np.max(np.abs(er[single])) > 0.01
    plots = effrob.write_analysis(tmp_path, t, a, tag="fit")
    assert [p.name for p in plots] == ["fit_ood.png", "fit_ood_multi_id1_id2_3d.png"]
    assert plots[0].stat().st_size > 1000
    header = (tmp_path / "fit_er.csv").read_text().splitlines()[0]
    assert "ER_pp[ood|multi:id1+id2]" in header
    assert (tmp_path / "fit_fits.json").exists()


def test_analysis_bootstrap_intervals_bracket_point_values():
    import jax

    rng = np.random.default_rng(0)
    m = 16
    z = rng.normal(size=(m, 2))
    t = effrob.AccuracyTable(
        names=tuple(f"m{i}" for i in range(m)),
        groups=tuple("x" if i < 8 else "y" for i in range(m)),
        id_names=("id1", "id2"),
        id_acc=1 / (1 + np.exp(-z)),
        ood_names=("ood",),
        ood_acc=1 / (1 + np.exp(-(0.5 * z.sum(1) + 0.1 * rng.normal(size=m))))[:, None],
    )
    a = effrob.analyze_table(
        t,
        id_sets=[(0, 1)],
        key=jax.random.key(0),
        num_bootstrap=100,
    )  # models resampled only; binomial example resampling is tested in test_bootstrap
    f = a["fits"]["ood"]["multi:id1+id2"]
    lo, hi = f["r2_ci"]
    assert 0 < lo < hi <= 1 and lo <= f["r2"] + 0.02
    for g in ("x", "y"):
        lo, hi = f["group_er_ci_pp"][g]
        assert lo < f["group_er_pp"][g] < hi
    with pytest.raises(ValueError, match="PRNG key"):
        effrob.analyze_table(t, num_bootstrap=10)


def _user_csv(tmp_path, blank=True):
    """A user's table: 3 groups x 8 models, OOD on a logit plane of two ID sets plus noise;
    one blank OOD cell (not measured)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(24, 2)) + np.repeat([[1, -1], [-1, 1], [0, 0]], 8, axis=0)
    ood = 0.6 * z[:, 0] + 0.4 * z[:, 1] - 0.3 + 0.1 * rng.normal(size=24)
    acc = lambda v: 100 / (1 + np.exp(-v))
    lines = ["model,group,run,imagenet,other,shift"]
    for i in range(24):
        cell = "" if blank and i == 5 else f"{acc(ood[i]):.3f}"
        grp = ("ImageNet", "LAION", "mix")[i // 8]
        lines.append(f"m{i},{grp},r{i // 2},{acc(z[i, 0]):.3f},{acc(z[i, 1]):.3f},{cell}")
    p = tmp_path / "user.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _read_user(tmp_path, id_columns, *, blank=True, **kwargs):
    return effrob.read_accuracy_csv(
        _user_csv(tmp_path, blank=blank),
        id_columns=id_columns,
        ood_columns="shift",
        group_column="group",
        scale=100,
        **kwargs,
    )


def test_blank_cell_drops_that_model_for_that_ood_set(tmp_path):
    t = _read_user(tmp_path, "imagenet,other", name_column="model", cluster_column="run")
    assert np.isnan(t.ood_acc[5, 0]) and t.clusters[:3] == ("r0", "r0", "r1")
    a = effrob.analyze_table(t)
    f = a["fits"]["shift"]["multi:imagenet+other"]
    assert f["num_models"] == 23 and f["group_size"]["ImageNet"] == 7
    assert np.isnan(a["er"]["shift"]["multi:imagenet+other"][5])
    # Same fit as on the table without that model.
    keep = np.arange(24) != 5
    b = effrob.analyze_table(t.select(keep))
    assert f["r2"] == pytest.approx(b["fits"]["shift"]["multi:imagenet+other"]["r2"], abs=1e-6)
    effrob.write_analysis(tmp_path / "out", t, a, tag="user")
    row = (tmp_path / "out" / "user_er.csv").read_text().splitlines()[6].split(",")
    assert row[0] == "m5" and row[5] == ""  # the blank stays blank, its ER too


def test_fit_on_a_named_subset_scores_all(tmp_path):
    t = _read_user(tmp_path, "imagenet", blank=False)
    a = effrob.analyze_table(t, fit_groups=["ImageNet"])
    f = a["fits"]["shift"]["single:imagenet"]
    sub = t.select(np.array([g == "ImageNet" for g in t.groups]))
    ref = effrob.fit_effective_robustness(sub.id_acc, sub.ood_acc[:, 0])
    np.testing.assert_allclose(f["coef"], np.asarray(ref.coef), atol=1e-5)
    assert f["num_fit"] == 8 and f["num_models"] == 24
    er = effrob.effective_robustness(ref, t.id_acc, t.ood_acc[:, 0])
    np.testing.assert_allclose(a["er"]["shift"]["single:imagenet"], er, atol=1e-5)
    assert "logo" not in f["cv_mae_pp"] and "kfold" in f["cv_mae_pp"]  # one fitted group
    with pytest.raises(ValueError, match="not groups of the table"):
        effrob.analyze_table(t, fit_groups=["JFT"])


@pytest.mark.slow
def test_sizes_widen_per_model_intervals_and_show_in_the_csv(tmp_path):
    import jax

    t = _read_user(tmp_path, "imagenet,other", blank=False)
    kw = dict(key=jax.random.key(0), num_bootstrap=100, id_sets=[(0, 1)])
    a = effrob.analyze_table(t, **kw)
    b = effrob.analyze_table(t, sizes={"imagenet": 500, "other": 500, "shift": 200}, **kw)
    width = lambda r: np.mean(np.subtract(*r["er_ci"]["shift"]["multi:imagenet+other"][::-1]))
    # Test-set noise of 200 OOD examples (sd ~3 pp per model) dominates the fit's noise.
    assert width(b) > 2 * width(a) and width(b) > 0.08
    effrob.write_analysis(tmp_path / "out", t, b, tag="user")
    header = (tmp_path / "out" / "user_er.csv").read_text().splitlines()[0]
    assert "ER_pp_low[shift|multi:imagenet+other]" in header
