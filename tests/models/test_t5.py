"""T5 network and decoding against an independent NumPy forward pass written here.

The reference shares no code with ``robustml_jax.models._t5_model``: its own RMS norm, tanh
GELU, bucket function (scalar Python), masks and attention, all in float64 from the raw
parameter arrays. The config has ``H * D != E`` and short bucket ranges so that a swapped
head/depth reshape, a wrong bucket sign or a missing log bucket all change the logits.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.models import t5

CFG = t5.T5Config(
    vocab_size=50,
    emb_dim=12,
    num_heads=3,
    head_dim=5,
    mlp_dim=20,
    num_encoder_layers=2,
    num_decoder_layers=2,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=12,
)
# eos_id and alpha traced: one compile per shape whatever EOS a test picks; GREEDY is traced
# exactly twice in this module (eos_id None and an int), which assert_max_traces enforces.
GREEDY = jax.jit(
    chex.assert_max_traces(t5.greedy_decode, n=2), static_argnames=("config", "max_decode_len")
)
BEAM = jax.jit(t5.beam_search, static_argnames=("config", "max_decode_len", "beam_size"))


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def random_params(cfg: t5.T5Config, seed: int = 0) -> dict:
    """Random float32 parameters of roughly trained scale, norm scales away from 1."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in t5.param_shapes(cfg).items():
        if path.endswith("scale"):
            v = 1.0 + 0.3 * rng.standard_normal(shape)
        elif path.endswith("embedding"):  # token table and relative-position tables
            v = rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(shape[0])
        flat[path] = v.astype(np.float32)
    return _unflatten(flat)


@pytest.fixture(scope="module")
def params():
    return random_params(CFG)


@pytest.fixture(scope="module")
def apply_jit():
    return jax.jit(t5.T5(CFG).apply)


def tokens(seed: int, shape, lengths=None) -> np.ndarray:
    """Random ids in [2, V) with zero padding after ``lengths`` (per row)."""
    out = np.random.default_rng(seed).integers(2, CFG.vocab_size, shape).astype(np.int32)
    if lengths is not None:
        for row, n in enumerate(lengths):
            out[row, n:] = 0
    return out


# --- Independent NumPy reference (float64). ---


def ref_bucket(rel: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """T5's bucket of one relative position, scalar float32 arithmetic as in t5x."""
    n, ret = -rel, 0
    if bidirectional:
        num_buckets //= 2
        if n < 0:
            ret = num_buckets
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return ret + n
    f32 = np.float32
    x = np.log(f32(n) / f32(max_exact) + f32(2.0**-23))
    x = x / f32(math.log(max_distance / max_exact)) * f32(num_buckets - max_exact)
    return ret + min(max_exact + int(x), num_buckets - 1)


def ref_forward(p, cfg, enc, dec, targets=None, mask_value=-1e10):
    """Logits [B, T_dec, V] of a T5.1.1 from raw parameter arrays, one example at a time."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    h, d = cfg.num_heads, cfg.head_dim

    def norm(x, scale):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))

    def relpos(table, tq, tk, bidirectional):
        out = np.zeros((h, tq, tk))
        for i in range(tq):
            for j in range(tk):
                b = ref_bucket(
                    j - i, bidirectional, table.shape[1], cfg.relative_attention_max_distance
                )
                out[:, i, j] = table[:, b]
        return out

    def attention(xq, xkv, w, bias):
        q = (xq @ w["query"]["kernel"]).reshape(len(xq), h, d)
        k = (xkv @ w["key"]["kernel"]).reshape(len(xkv), h, d)
        v = (xkv @ w["value"]["kernel"]).reshape(len(xkv), h, d)
        s = np.einsum("qhd,khd->hqk", q, k) + bias  # no 1/sqrt(d): it is in the kernel
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        return np.einsum("hqk,khd->qhd", s, v).reshape(len(xq), h * d) @ w["out"]["kernel"]

    acts = {"gelu": gelu_tanh, "relu": lambda x: np.maximum(x, 0.0), "linear": lambda x: x}

    def mlp(x, w):
        names = ["wi"] if len(cfg.mlp_activations) == 1 else ["wi_0", "wi_1"]
        branches = zip(cfg.mlp_activations, names, strict=True)
        a = np.prod([acts[f](x @ w[n]["kernel"]) for f, n in branches], 0)
        return a @ w["wo"]["kernel"]

    emb = p["token_embedder"]["embedding"]
    out = []
    for b in range(enc.shape[0]):
        ev = enc[b] > 0
        tq = dec.shape[1]
        dv = targets[b] > 0 if targets is not None else np.ones(tq, bool)
        enc_bias = np.where(ev[:, None] & ev[None, :], 0.0, mask_value)
        enc_bias = enc_bias + relpos(
            p["encoder"]["relpos_bias"]["rel_embedding"], len(ev), len(ev), True
        )
        x = emb[enc[b]]
        for i in range(cfg.num_encoder_layers):
            w = p["encoder"][f"layers_{i}"]
            x = x + attention(
                *(2 * [norm(x, w["pre_attention_layer_norm"]["scale"])]), w["attention"], enc_bias
            )
            x = x + mlp(norm(x, w["pre_mlp_layer_norm"]["scale"]), w["mlp"])
        encoded = norm(x, p["encoder"]["encoder_norm"]["scale"])

        causal = np.tril(np.ones((tq, tq), bool))
        self_mask = causal & dv[:, None] & dv[None, :] if targets is not None else causal
        self_bias = np.where(self_mask, 0.0, mask_value)
        self_bias = self_bias + relpos(p["decoder"]["relpos_bias"]["rel_embedding"], tq, tq, False)
        cross_bias = np.where(dv[:, None] & ev[None, :], 0.0, mask_value)
        y = emb[dec[b]]
        for i in range(cfg.num_decoder_layers):
            w = p["decoder"][f"layers_{i}"]
            z = norm(y, w["pre_self_attention_layer_norm"]["scale"])
            y = y + attention(z, z, w["self_attention"], self_bias)
            z = norm(y, w["pre_cross_attention_layer_norm"]["scale"])
            y = y + attention(z, encoded, w["encoder_decoder_attention"], cross_bias)
            y = y + mlp(norm(y, w["pre_mlp_layer_norm"]["scale"]), w["mlp"])
        y = norm(y, p["decoder"]["decoder_norm"]["scale"])
        if cfg.logits_via_embedding:  # original T5: tied output layer, scaled by 1/sqrt(E)
            out.append(y @ emb.T / np.sqrt(cfg.emb_dim))
        else:
            out.append(y @ p["decoder"]["logits_dense"]["kernel"])
    return np.stack(out)


# --- Buckets. ---


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 12), (4, 8), (16, 40)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_scalar_reference(
    num_buckets, max_distance, bidirectional
):
    rel = np.arange(-300, 301)[None, :] - np.zeros((2, 1), int)
    got = t5.relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    want = [ref_bucket(int(r), bidirectional, num_buckets, max_distance) for r in rel[0]]
    assert got.dtype == np.int32 and got.shape == rel.shape
    np.testing.assert_array_equal(got[0], want)
    assert got.min() >= 0 and got.max() == num_buckets - 1


def test_relative_position_bucket_known_values():
    b = lambda r, bi: int(
        t5.relative_position_bucket(np.array(r), bidirectional=bi, num_buckets=32, max_distance=128)
    )
    # Encoder: keys before the query (rel < 0) in the lower half, after it in the upper half.
    assert [b(0, True), b(-1, True), b(-7, True), b(-8, True), b(1, True), b(7, True)] == [
        0, 1, 7, 8, 17, 23,
    ]  # fmt: skip
    assert b(-127, True) == 15 and b(-128, True) == 15 and b(5000, True) == 31
    # Log buckets grow by 2**(1/2) from distance 8: 11 -> 8, 12 -> 9, 16 (an exact edge) -> 10.
    assert [b(-11, True), b(-12, True), b(-16, True), b(-45, True)] == [8, 9, 10, 12]
    # Decoder: causal; all future positions share bucket 0; 16 exact buckets.
    assert [b(3, False), b(0, False), b(-1, False), b(-15, False), b(-16, False)] == [
        0,
        0,
        1,
        15,
        16,
    ]
    assert b(-10_000, False) == 31


# --- Forward pass. ---

CASES = {
    "no_padding": dict(enc_len=None, targets=False),
    "encoder_padding": dict(enc_len=[9, 4], targets=False),
    "target_padding": dict(enc_len=[6, 9], targets=True),
}


def _case(name):
    c = CASES[name]
    enc = tokens(1, (2, 9), c["enc_len"])
    dec = tokens(2, (2, 6))  # (2, 9) -> (2, 6) everywhere: one compile of each function
    dec[:, 0] = 0  # start token
    targets = None
    if c["targets"]:
        targets = np.concatenate([dec[:, 1:], tokens(3, (2, 1))], 1)
        targets[1, 4:] = 0
        dec[1, 5:] = 0
    return enc, dec, targets


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_numpy_reference(params, apply_jit, case, jit):
    enc, dec, targets = _case(case)
    fn = apply_jit if jit else t5.T5(CFG).apply
    logits = fn({"params": params}, enc, dec, targets)
    chex.assert_shape(logits, (2, 6, CFG.vocab_size))
    assert logits.dtype == jnp.float32
    want = ref_forward(params, CFG, enc, dec, targets)
    # Padded target rows attend to nothing; their values are t5x's -1e10 artefact (in float32
    # the relative bias vanishes next to -1e10), so only real positions are compared there.
    rows = targets > 0 if targets is not None else np.ones(dec.shape, bool)
    np.testing.assert_allclose(np.asarray(logits)[rows], want[rows], rtol=1e-5, atol=1e-5)


def test_forward_float64_matches_reference_tightly(params, x64):
    """In float64 the model must agree to ~1e-12: catches eps, GELU-form or scale slips."""
    cfg64 = t5.T5Config(**{**CFG.__dict__, "dtype": jnp.float64})
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    enc, dec, targets = _case("target_padding")
    logits = jax.jit(t5.T5(cfg64).apply)({"params": p64}, enc, dec, targets)
    assert logits.dtype == jnp.float64
    np.testing.assert_allclose(
        logits, ref_forward(params, CFG, enc, dec, targets), rtol=1e-10, atol=1e-10
    )


def test_t5_1_0_variant_and_bfloat16():
    """Original T5 (ReLU MLP, tied output layer) against the reference; bfloat16 activations."""
    cfg = t5.T5Config(
        **{**CFG.__dict__, "mlp_activations": ("relu",), "logits_via_embedding": True}
    )
    p = random_params(cfg, seed=5)
    enc, dec, targets = _case("target_padding")
    logits = jax.jit(t5.T5(cfg).apply)({"params": p}, enc, dec)
    np.testing.assert_allclose(logits, ref_forward(p, cfg, enc, dec), rtol=1e-5, atol=1e-5)
    params = random_params(CFG)
    want = ref_forward(params, CFG, enc, dec)
    cfg16 = t5.T5Config(**{**CFG.__dict__, "dtype": jnp.bfloat16, "float32_attention_logits": True})
    got = jax.jit(t5.T5(cfg16).apply)({"params": params}, enc, dec)
    assert got.dtype == jnp.float32  # logits stay float32, as in t5x
    np.testing.assert_allclose(got, want, atol=0.15 * np.abs(want).max())


def test_decoder_is_causal_and_encoder_padding_is_ignored(params, apply_jit):
    enc, dec, _ = _case("encoder_padding")
    base = np.asarray(apply_jit({"params": params}, enc, dec))
    later = dec.copy()
    later[:, 4] = (later[:, 4] + 1) % CFG.vocab_size + 1
    changed = np.asarray(apply_jit({"params": params}, enc, later))
    np.testing.assert_array_equal(changed[:, :4], base[:, :4])  # bit-exact: masked exactly
    assert np.abs(changed[:, 4:] - base[:, 4:]).min() > 0
    padded = enc.copy()
    padded[1, 4:] = 0  # row 1 is already padded from 4 on; extend the padding with new junk
    padded[1, 6] = 0
    np.testing.assert_allclose(apply_jit({"params": params}, padded, dec)[1], base[1], atol=1e-6)


# --- Cache and decoding. ---


def test_kv_cache_matches_full_forward(params, apply_jit):
    enc, dec, _ = _case("encoder_padding")
    full = np.asarray(apply_jit({"params": params}, enc, dec))  # causal only, as in decoding
    step = jax.jit(t5.decode_step, static_argnames="config")
    cache = t5.init_decode_cache(params, enc, config=CFG, max_decode_len=dec.shape[1])
    chex.assert_shape(cache["decoder"]["layers_0"]["self_attention"]["cached_key"], (2, 6, 3, 5))
    for i in range(dec.shape[1]):
        logits, cache = step(params, cache, enc, dec[:, i : i + 1], config=CFG)
        chex.assert_trees_all_close(logits, full[:, i], rtol=1e-5, atol=1e-5)
    assert int(cache["decoder"]["cache_index"]) == dec.shape[1]


def _teacher_forced_log_probs(params, apply_jit, enc, seqs):
    """log p(seqs[:, t] | seqs[:, :t]) by one full causal forward pass: [B, L]."""
    inputs = np.concatenate([np.zeros((seqs.shape[0], 1), np.int32), seqs[:, :-1]], 1)
    logits = apply_jit({"params": params}, enc, inputs)
    lp = np.asarray(jax.nn.log_softmax(logits))
    return np.take_along_axis(lp, seqs[..., None], -1)[..., 0], np.asarray(logits)


def test_greedy_is_stepwise_argmax(params, apply_jit):
    enc, _, _ = _case("encoder_padding")
    out = GREEDY(params, enc, config=CFG, max_decode_len=6, eos_id=None)
    chex.assert_shape(out.sequences, (2, 6))
    seqs = np.asarray(out.sequences)
    tok_lp, logits = _teacher_forced_log_probs(params, apply_jit, enc, seqs)
    np.testing.assert_array_equal(logits.argmax(-1), seqs)
    np.testing.assert_allclose(out.scores, tok_lp.sum(1), rtol=1e-5)
    # Without a cache (full decoder every step) the result is the same.
    nocache = t5.greedy_decode(
        params, enc, config=CFG, max_decode_len=6, eos_id=None, use_cache=False
    )
    np.testing.assert_array_equal(nocache.sequences, seqs)

    # EOS: make row 0's third token the EOS; row 0 then stops there, zeros after.
    eos = int(seqs[0, 2])
    stopped = GREEDY(params, enc, config=CFG, max_decode_len=6, eos_id=eos)
    s = np.asarray(stopped.sequences)
    first = int(np.argmax(seqs[0] == eos))
    np.testing.assert_array_equal(s[0, : first + 1], seqs[0, : first + 1])
    assert (s[0, first + 1 :] == 0).all()
    np.testing.assert_allclose(stopped.scores[0], tok_lp[0, : first + 1].sum(), rtol=1e-5)


def test_beam_width_one_equals_greedy(params):
    enc, _, _ = _case("encoder_padding")
    ref = GREEDY(params, enc, config=CFG, max_decode_len=6, eos_id=None)
    eos = int(ref.sequences[0, 3])
    for eos_id in (eos, CFG.vocab_size - 1):
        greedy = GREEDY(params, enc, config=CFG, max_decode_len=6, eos_id=eos_id)
        beam = BEAM(
            params, enc, config=CFG, max_decode_len=6, beam_size=1, alpha=0.0, eos_id=eos_id
        )
        chex.assert_shape(beam.sequences, (2, 1, 6))
        np.testing.assert_array_equal(beam.sequences[:, 0], greedy.sequences)
        np.testing.assert_allclose(beam.scores[:, 0], greedy.scores, rtol=1e-5)


def test_beam_search_scores_are_penalised_log_probs(params, apply_jit):
    enc, _, _ = _case("encoder_padding")
    # EOS := the second token of the best beam found without stopping, so beams do end.
    free = BEAM(params, enc, config=CFG, max_decode_len=6, beam_size=4, alpha=0.6, eos_id=49)
    eos = int(free.sequences[0, 0, 1])
    out = BEAM(params, enc, config=CFG, max_decode_len=6, beam_size=4, alpha=0.6, eos_id=eos)
    chex.assert_shape(out.sequences, (2, 4, 6))
    chex.assert_shape(out.scores, (2, 4))
    scores = np.asarray(out.scores)
    assert (np.diff(scores, axis=1) <= 0).all()  # best beam first
    beams = np.asarray(out.sequences)
    per_beam = [_teacher_forced_log_probs(params, apply_jit, enc, beams[:, k])[0] for k in range(4)]
    seqs, tok_lp = beams.reshape(8, 6), np.stack(per_beam, 1).reshape(8, 6)
    checked = 0
    for i, (seq, score) in enumerate(zip(seqs, scores.reshape(-1), strict=True)):
        if eos not in seq or score < -1e6:
            continue
        n = int(np.argmax(seq == eos)) + 1  # length including EOS
        assert (seq[n:] == 0).all()
        want = tok_lp[i, :n].sum() / ((5.0 + n) / 6.0) ** 0.6
        np.testing.assert_allclose(score, want, rtol=1e-5, err_msg=f"beam {i}")
        checked += 1
    assert checked >= 2
    # The best beam is at least as likely (after the penalty) as greedy's own EOS-ended path.
    g = GREEDY(params, enc, config=CFG, max_decode_len=6, eos_id=eos)
    gl = (np.asarray(g.sequences) != 0).sum(1)
    g_scores = np.asarray(g.scores) / ((5.0 + gl) / 6.0) ** 0.6
    ended = (np.asarray(g.sequences) == eos).any(1)
    assert (scores[ended, 0] >= g_scores[ended] - 1e-5).all()


def test_decoding_does_not_retrace(params):
    for seed in range(3):  # GREEDY fails if this traces again (see its definition)
        out = GREEDY(params, tokens(seed, (2, 9)), config=CFG, max_decode_len=6, eos_id=seed + 1)
        chex.assert_shape(out.sequences, (2, 6))


# --- Initialisation, presets, bad input. ---


def test_init_params_follow_t5x_initialisers():
    p = t5.init_params(jax.random.key(0), CFG)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        p, jax.tree.map(lambda a: jnp.zeros(a.shape, jnp.float32), random_params(CFG))
    )
    layer = p["encoder"]["layers_0"]["attention"]
    q, k = (np.concatenate([np.ravel(p[x]["layers_" + str(i)][a][w]["kernel"])
            for x, a in (("encoder", "attention"), ("decoder", "self_attention"))
            for i in range(2)]) for w in ("query", "key"))  # fmt: skip
    # Query kernels carry t5x's 1/sqrt(head_dim) = 1/sqrt(5) on top of fan-in scaling.
    np.testing.assert_allclose(k.std(), 1 / np.sqrt(CFG.emb_dim), rtol=0.1)
    np.testing.assert_allclose(q.std() / k.std(), 1 / np.sqrt(CFG.head_dim), rtol=0.15)
    np.testing.assert_allclose(np.std(p["token_embedder"]["embedding"]), 1.0, rtol=0.1)
    np.testing.assert_array_equal(p["encoder"]["encoder_norm"]["scale"], np.ones(12))
    assert layer["query"]["kernel"].dtype == jnp.float32


def test_presets_and_parameter_counts():
    small = t5.T5Config.t5_1_1_small()
    assert (small.emb_dim, small.num_heads, small.head_dim, small.mlp_dim) == (512, 6, 64, 1024)
    assert small.relative_attention_num_buckets == 32 and not small.logits_via_embedding
    assert t5.T5Config.mt5_xxl().vocab_size == 250112
    assert t5.T5Config.t5_1_1_xl(dtype=jnp.bfloat16).dtype == jnp.bfloat16
    count = lambda cfg: sum(math.prod(s) for s in t5.param_shapes(cfg).values())
    # Published sizes of google/t5-v1_1-small and -base (77M, 248M).
    assert round(count(small) / 1e6) == 77
    assert round(count(t5.T5Config.t5_1_1_base()) / 1e6) == 248
    tied = t5.param_shapes(
        t5.T5Config.t5_1_1_tiny(logits_via_embedding=True, mlp_activations=("relu",))
    )
    assert "decoder/logits_dense/kernel" not in tied and "encoder/layers_0/mlp/wi/kernel" in tied
    with pytest.raises(ValueError, match="unknown T5 preset"):
        t5.T5Config.preset("t5_1_1_huge")
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        t5.T5Config.t5_1_1_tiny(num_heads=0)
    with pytest.raises(ValueError, match="unknown activation 'swish2'"):
        t5.T5Config.t5_1_1_tiny(mlp_activations=("swish2", "linear"))


def test_check_params_names_first_mismatch(params):
    t5.check_params(params, CFG)
    bad = jax.tree.map(lambda a: a, params)
    bad["encoder"]["layers_1"]["mlp"]["wi_0"]["kernel"] = np.zeros((12, 21), np.float32)
    bad["decoder"]["layers_0"]["mlp"]["wo"]["kernel"] = np.zeros((3, 3), np.float32)
    msg = (
        r"parameter 'decoder/layers_0/mlp/wo/kernel' has shape \(3, 3\) "
        r"but the config expects \(20, 12\)"
    )
    with pytest.raises(ValueError, match=msg):
        t5.check_params(bad, CFG)
    with pytest.raises(ValueError, match=msg):  # the model refuses it too, before any XLA op
        t5.T5(CFG).apply({"params": bad}, tokens(0, (1, 3)), tokens(1, (1, 2)))
    missing = jax.tree.map(lambda a: a, params)
    del missing["encoder"]["layers_0"]["pre_mlp_layer_norm"]
    with pytest.raises(ValueError, match="'encoder/layers_0/pre_mlp_layer_norm/scale' is missing"):
        t5.check_params(missing, CFG)
    extra = jax.tree.map(lambda a: a, params)
    extra["encoder"]["layers_0"]["attention"]["query"]["bias"] = np.zeros(15, np.float32)
    with pytest.raises(
        ValueError, match="unexpected parameter 'encoder/layers_0/attention/query/bias'"
    ):
        t5.check_params(extra, CFG)
    with pytest.raises(ValueError, match=r"wrapped in \{'params': ...\}"):
        t5.check_params({"params": params}, CFG)
    bigger_vocab = t5.T5Config(**{**CFG.__dict__, "vocab_size": 64})
    with pytest.raises(
        ValueError, match=r"\(12, 50\) but the config expects \(12, 64\) \(vocab_size=64"
    ):
        t5.check_params(params, bigger_vocab)


def test_token_checks(params, apply_jit):
    model = t5.T5(CFG)
    enc, dec = tokens(0, (2, 9)), tokens(1, (2, 6))
    for bad_id in (CFG.vocab_size, -3):
        bad = enc.copy()
        bad[1, 2] = bad_id
        with pytest.raises(
            ValueError,
            match=rf"encoder_input_tokens holds token id {bad_id}, outside the vocabulary \[0, 50",
        ):
            model.apply({"params": params}, bad, dec)
        with pytest.raises(ValueError, match="outside the vocabulary"):  # checked before jit
            t5.greedy_decode(params, bad, config=CFG, max_decode_len=3)
        # Under jit the ids cannot be checked; they give NaN instead of a clamped embedding.
        logits = np.asarray(apply_jit({"params": params}, bad, dec))
        assert np.isnan(logits[1]).all() and np.isfinite(logits[0]).all()
    with pytest.raises(ValueError, match="must hold integer token ids, got dtype float32"):
        model.apply({"params": params}, enc.astype(np.float32), dec)
    with pytest.raises(ValueError, match=r"must be \[batch, length\], got shape \(9,\)"):
        model.apply({"params": params}, enc[0], dec)
    with pytest.raises(ValueError, match="eos_id must be in"):
        t5.greedy_decode(params, enc, config=CFG, max_decode_len=3, eos_id=0)
    with pytest.raises(ValueError, match="needs a cache"):
        model.apply({"params": params}, None, enc, dec[:, :1], decode=True, method=t5.T5.decode)
