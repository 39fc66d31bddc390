"""The stages on the shared trainer: frozen halves are bit-for-bit unchanged, the trained half
moves, keep-best returns the best evaluation's parameters, and a resumed stage reuses them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import promot
from robustml_jax.models import t5
from robustml_jax.promot import _pipeline

CFG = t5.T5Config.t5_1_1_tiny(vocab_size=64, emb_dim=8, head_dim=4, mlp_dim=16, dropout_rate=0.1)
FCFG = promot.FinetuneConfig(
    prompt_length=3,
    prompt_lr=0.2,
    model_lr=1e-2,
    prompt_steps=3,
    model_steps=3,
    batch_size=4,
    eval_every=1,
    max_input_len=16,
    max_target_len=3,
)


def _data(n=8):
    rng = np.random.default_rng(0)
    inputs = np.zeros((n, 10), np.int32)
    inputs[:, :6] = rng.integers(3, 60, (n, 6))
    inputs[:, 6] = 1
    targets = np.stack([rng.integers(3, 60, n), np.ones(n, int), np.zeros(n, int)], 1)
    return {"inputs": inputs, "targets": targets.astype(np.int32), "task": np.zeros(n, np.int32)}


def _stage(tmp_path, params, trainable, scores=None):
    calls = []

    def eval_fn(p):
        calls.append(jax.device_get(p))
        return {"rte_accuracy": (scores or [0, 1, 2, 3])[len(calls) - 1]}

    best, hist = _pipeline.run_stage(
        tmp_path,
        params,
        trainable=trainable,
        lr=0.2,
        parameter_scale=False,
        steps=3,
        data=_data(),
        config=CFG,
        cfg=FCFG,
        eval_fn=eval_fn,
        key=jax.random.key(0),
        desc="t",
    )
    return best, hist, calls


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_stage1_changes_only_the_prompt_stage2_only_the_model(tmp_path):
    model = t5.init_params(jax.random.key(0), CFG)
    prompt = promot.init_prompt(jax.random.key(1), 3, model["token_embedder"]["embedding"])
    params = {"model": model, "prompt": prompt}
    p1, hist, _ = _stage(tmp_path / "s1", params, promot.prompt_trainable)
    assert [h["step"] for h in hist] == [0, 1, 2, 3]
    assert _equal(p1["model"], model)  # frozen: bit-for-bit
    assert not np.allclose(p1["prompt"], prompt)
    p2, _, _ = _stage(tmp_path / "s2", p1, promot.model_trainable)
    np.testing.assert_array_equal(p2["prompt"], p1["prompt"])  # frozen: bit-for-bit
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(p2["model"]), jax.tree.leaves(model), strict=True)
    ]
    assert all(moved)  # every model weight trained (dropout on, Adafactor)


def test_keep_best_returns_best_evaluation_and_survives_resume(tmp_path):
    model = t5.init_params(jax.random.key(0), CFG)
    params = {"model": model}
    best, hist, calls = _stage(tmp_path, params, promot.model_trainable, scores=[0, 5, 1, 2])
    assert [h["rte_accuracy"] for h in hist] == [0, 5, 1, 2]
    assert _equal(best, calls[1])  # the parameters of the step-1 evaluation
    # Ties go to the later evaluation (all-zero accuracy keeps the trained parameters).
    tied, _, tcalls = _stage(tmp_path / "tie", params, promot.model_trainable, scores=[0, 0, 0, 0])
    assert _equal(tied, tcalls[3]) and not _equal(tied, tcalls[0])
    # Re-running the finished stage reads the saved best instead of the initial params.
    again, _, _ = _stage(tmp_path, params, promot.model_trainable, scores=[0, 0, 0, 0])
    assert _equal(again, calls[1])


def test_task_loss_selects_each_rows_prompt():
    model = t5.init_params(jax.random.key(0), CFG)
    prompts = jax.random.normal(jax.random.key(2), (2, 3, 8))
    b = _data(4)
    b["task"] = np.array([0, 1, 1, 0], np.int32)
    kw = dict(config=CFG, label_smoothing=0.0, dropout=False)
    got, _ = _pipeline.task_loss({"model": model, "prompt": prompts}, b, jax.random.key(0), **kw)
    per_row = [
        _pipeline.task_loss(
            {"model": model, "prompt": prompts[t]},
            {k: v[i : i + 1] for k, v in b.items()},
            jax.random.key(0),
            **kw,
        )[0]
        for i, t in enumerate(b["task"])
    ]
    # every row has 2 target tokens, so the batch mean is the mean of row means
    assert float(got) == pytest.approx(float(jnp.mean(jnp.array(per_row))), rel=1e-5)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'lora'"):
        promot.run_method(
            "lora",
            "/tmp/x",
            {},
            config=CFG,
            cfg=FCFG,
            data={},
            make_eval=None,
            key=jax.random.key(0),
        )
