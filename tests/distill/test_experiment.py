"""End-to-end tests: the experiment main (smoke), the report entry point, resume after a kill."""

import json

import jax
import numpy as np
import pytest

from experiments.distill import report
from experiments.distill.configs.default import get_config, validate
from experiments.distill.train import train_and_evaluate
from robustml_jax.core import datasets, experiment
from robustml_jax.core.errors import ConfigError


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run through the report entry point, which runs the main's
    ``experiment.run(train_and_evaluate, config, workdir)`` in-process."""
    try:
        datasets.locate(get_config("smoke").dataset)
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))
    workdir = tmp_path_factory.mktemp("distill_smoke")
    rep = report.run(workdir, "smoke")
    return workdir, json.loads((workdir / "results.json").read_text()), rep


def test_smoke_main_end_to_end(smoke_run):
    workdir, on_disk, _ = smoke_run
    res = on_disk
    assert on_disk["iterations"] == get_config("smoke").iterations
    for k in ("syn_acc_mean", "random_real_acc_mean", "full_data_acc_mean"):
        assert 0.0 <= on_disk[k] <= 1.0
    for plot in res["plots"]:
        assert (workdir / plot).read_bytes()[:4] == b"\x89PNG"
    syn = np.load(workdir / "syn_images.npy")
    assert syn.shape == (10, 28, 28, 1)
    assert np.isfinite(syn).all()
    assert on_disk["syn_lr"] != get_config("smoke").lr_teacher  # the step size was learned
    # A broken run fails these: the images move the student towards the expert (the matching
    # loss, < 1 from the start, falls over the 4 iterations, which all match the same expert
    # segment), and every trained network is well above chance (10%; smoke: about 20-25%).
    assert on_disk["matching_loss_last"] < on_disk["matching_loss_first"] < 1.0
    assert on_disk["syn_acc_mean"] > 0.15 and on_disk["random_real_acc_mean"] > 0.15
    assert on_disk["full_data_acc_mean"] > 0.13
    records = [
        json.loads(x) for x in (workdir / "distill" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4]


@pytest.mark.slow
def test_killed_distillation_resumes_identically(smoke_run, tmp_path):
    """Stopping after 2 of 4 iterations (checkpoint at 2) and re-running gives the same images
    and the same loss log as the uninterrupted run."""
    workdir, _, _ = smoke_run
    config = get_config("smoke")
    config.expert_dir = str(workdir / "experts")
    config.iterations = 2  # "killed" right after the checkpoint at iteration 2
    experiment.run(train_and_evaluate, config, tmp_path)
    config.iterations = 4
    experiment.run(train_and_evaluate, config, tmp_path)
    np.testing.assert_array_equal(
        np.load(tmp_path / "syn_images.npy"), np.load(workdir / "syn_images.npy")
    )

    def losses(d):
        recs = [json.loads(x) for x in (d / "distill" / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in recs if r["split"] == "train"]

    assert losses(tmp_path) == losses(workdir)


@pytest.mark.parametrize("label_mode", [pytest.param("sla", marks=pytest.mark.slow), "learned"])
def test_soft_label_modes_end_to_end(smoke_run, tmp_path, label_mode):
    """The ``sla`` and ``learned`` label modes through the experiment (reusing the smoke run's
    expert): the labels the distilled set is evaluated with are saved and are what the mode
    says they are."""
    from jax.flatten_util import ravel_pytree

    from robustml_jax.distill import load_trajectories
    from robustml_jax.models.convnet import ConvNet

    workdir, _, _ = smoke_run
    config = get_config("smoke")
    config.update(
        expert_dir=str(workdir / "experts"),
        label_mode=label_mode,
        iterations=2,
        log_every=1,
        eval_models=1,
        eval_epochs=2,
        eval_archs="alexnet" if label_mode == "learned" else "",  # cross-arch wiring
    )
    res = experiment.run(train_and_evaluate, config, tmp_path)
    assert res["label_mode"] == label_mode and np.isfinite(res["matching_loss_last"])
    if label_mode == "learned":  # one item per architecture, both sets evaluated
        assert sorted(res["cross_arch"]) == ["alexnet"]
        assert (tmp_path / "cross_arch" / "alexnet" / "result.json").exists()
        assert 0.0 < res["cross_arch"]["alexnet"]["syn_acc_mean"] <= 1.0
    x = np.load(tmp_path / "syn_images.npy")
    labels = np.load(tmp_path / "syn_labels.npy")
    assert labels.shape == (10, 10)  # IPC 1, class-major
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-5)
    assert np.abs(labels - np.eye(10)).max() > 0.05  # soft, not the hard labels
    if label_mode == "learned":
        init = jax.nn.softmax(config.label_init_scale * np.eye(10))
        assert np.abs(labels - init).max() > 1e-4  # optimised with the images
        np.testing.assert_array_equal(labels.argmax(1), np.arange(10))
    else:  # the softmax of expert 0 at the last target epoch on the final images
        model = ConvNet(num_classes=10, width=config.width, depth=config.depth)
        template = model.init(jax.random.key(0), x[:1])["params"]
        last = config.max_start_epoch - 1 + config.expert_epochs
        buf = load_trajectories(template, directory=workdir / "experts", num_experts=1, epochs=last)
        expert = ravel_pytree(template)[1](buf[0, last])
        expected = jax.nn.softmax(model.apply({"params": expert}, x) / config.sla_temperature)
        np.testing.assert_allclose(labels, expected, rtol=1e-4, atol=1e-6)


def test_report_smoke(smoke_run):
    workdir, res, rep = smoke_run
    assert len(rep.rows) >= 4
    assert rep.rows[0].metric.startswith("mnist_5k IPC1 distilled")
    assert rep.rows[0].ours.startswith(f"{100 * res['syn_acc_mean']:.1f}")
    assert all((workdir / p).exists() for p in rep.plots)
    assert "random real" in rep.summary


def test_unknown_config_and_invalid_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown config 'huge'"):
        get_config("huge")
    config = get_config("smoke")
    config.max_start_epoch = 3  # 3 - 1 + 1 = 3 > the experts' 2 epochs
    with pytest.raises(ConfigError, match="max_start_epoch=3: .*exceed the experts' 2 epochs"):
        validate(config)
    with pytest.raises(ConfigError, match="max_start_epoch=3"):  # also without the main
        train_and_evaluate(config, tmp_path, None)
    for field, value, match in [
        ("gradient", "exact", "one of"),
        ("label_mode", "soft", "one of"),
        ("ipc", 0, "a positive integer"),
        ("batch_syn", -1, "a non-negative integer"),
    ]:
        config = get_config("smoke")
        config[field] = value
        with pytest.raises(ConfigError, match=f"config.{field}=.*must be {match}"):
            validate(config)


def test_missing_expert_file_is_a_clear_error(tmp_path):
    from robustml_jax.distill import load_trajectories

    with pytest.raises(FileNotFoundError, match="expert 0: no trajectory"):
        load_trajectories({"w": jax.numpy.zeros(2)}, directory=tmp_path, num_experts=1, epochs=1)
