"""Per-group gradient cosines against NumPy, and the parameter grouping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import promot
from robustml_jax.models import t5


def test_param_groups_of_t5_paths():
    cfg = t5.T5Config.t5_1_1_tiny()
    groups = {p: promot.param_group(p) for p in t5.param_shapes(cfg)}
    assert groups["encoder/layers_0/mlp/wi_0/kernel"] == "mlp"
    assert groups["decoder/layers_1/encoder_decoder_attention/key/kernel"] == "key"
    assert groups["decoder/layers_0/self_attention/query/kernel"] == "query"
    assert groups["encoder/layers_1/attention/value/kernel"] == "value"
    assert groups["encoder/layers_1/attention/out/kernel"] == "out"
    assert groups["token_embedder/embedding"] == "embedding"
    assert groups["decoder/logits_dense/kernel"] == "embedding"
    assert groups["encoder/encoder_norm/scale"] == "other"


def test_group_cosines_match_numpy():
    cfg = t5.T5Config.t5_1_1_tiny(vocab_size=64)
    shapes = t5.param_shapes(cfg)
    rng = np.random.default_rng(0)
    a = {p: rng.normal(size=s).astype(np.float32) for p, s in shapes.items()}
    b = {p: (0.5 * a[p] + rng.normal(size=s)).astype(np.float32) for p, s in shapes.items()}
    got = promot.group_cosines(a, b)
    for g in set(promot.param_group(p) for p in shapes) | {"all"}:
        paths = [p for p in shapes if g == "all" or promot.param_group(p) == g]
        va = np.concatenate([a[p].ravel() for p in sorted(paths)]).astype(np.float64)
        vb = np.concatenate([b[p].ravel() for p in sorted(paths)]).astype(np.float64)
        want = va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)
        np.testing.assert_allclose(float(got[g]), want, rtol=1e-5, atol=1e-6)
    same = promot.group_cosines(a, a)
    assert all(abs(float(v) - 1) < 1e-5 for v in same.values())
    zero = promot.group_cosines(a, jax.tree.map(jnp.zeros_like, a))
    assert all(float(v) == 0.0 for v in zero.values())


def test_group_cosines_rejects_different_trees():
    with pytest.raises(ValueError, match="different parameters"):
        promot.group_cosines({"a": jnp.ones(2)}, {"b": jnp.ones(2)})


def test_shuffled_labels_keep_inputs():
    batch = {"inputs": np.arange(8).reshape(4, 2), "targets": np.arange(4)[:, None] + 5}
    out = promot.shuffled_labels_batch(batch, jax.random.key(1))
    np.testing.assert_array_equal(out["inputs"], batch["inputs"])
    assert sorted(out["targets"][:, 0].tolist()) == [5, 6, 7, 8]
