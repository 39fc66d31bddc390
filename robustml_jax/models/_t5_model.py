"""The T5.1.1 / mT5 network: config, Flax Linen modules, initialisation and parameter checks.

Public names are re-exported by :mod:`robustml_jax.models.t5`, whose docstring lists the t5x
conventions followed here. Shapes: B = batch, T_enc / T_dec = encoder / decoder lengths,
L = decode-cache length, E = emb_dim, H = num_heads, D = head_dim, F = mlp_dim,
V = vocab_size, N = relative_attention_num_buckets.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# t5x adds -1e10 (not -inf) to masked attention logits, so a fully masked row stays finite.
_MASK_BIAS = -1e10

_PRESETS: dict[str, dict[str, int]] = {
    # From t5x/examples/t5/{t5_1_1,mt5}/*.gin; mT5 differs only in its 250k vocabulary.
    "small": dict(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024, num_layers=8),
    "base": dict(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048, num_layers=12),
    "large": dict(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816, num_layers=24),
    "xl": dict(emb_dim=2048, num_heads=32, head_dim=64, mlp_dim=5120, num_layers=24),
    "xxl": dict(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240, num_layers=24),
}
_T5_VOCAB = 32128  # 32,000 SentencePiece pieces + 100 extra ids, padded to a multiple of 128.
_MT5_VOCAB = 250112


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Hyper-parameters of a T5.1.1 / mT5 encoder-decoder (hashable: usable as a static arg).

    Presets: ``T5Config.t5_1_1_{small,base,large,xl,xxl}()``,
    ``T5Config.mt5_{small,base,large,xl,xxl}()`` (the t5x gin configs, 32 buckets, max distance
    128) and ``T5Config.t5_1_1_tiny()`` (the shipped tiny test checkpoint). Each takes keyword
    overrides, e.g. ``T5Config.t5_1_1_small(dtype=jnp.bfloat16, dropout_rate=0.1)``.

    Attributes:
      vocab_size: V, rows of the token embedding (and columns of ``decoder/logits_dense``).
      emb_dim: E, the model width.
      num_heads: H.
      head_dim: D, per-head width; its own field (T5.1.1 XL/XXL have H * D != E in spirit).
      mlp_dim: F, hidden width of the gated MLP.
      num_encoder_layers: encoder blocks.
      num_decoder_layers: decoder blocks.
      relative_attention_num_buckets: N, relative-position buckets (t5x: 32).
      relative_attention_max_distance: distance beyond which all positions share a bucket
        (t5x: 128).
      dropout_rate: dropout everywhere t5x puts it (0 for the presets, as in t5x inference).
      dtype: activation dtype; parameters stay float32 as in t5x.
      mlp_activations: one activation per ``wi`` branch, multiplied together (``'linear'`` or a
        ``flax.linen`` function name); ``('gelu', 'linear')`` is T5.1.1's gated GELU (flax's
        tanh form), ``('relu',)`` the original T5.
      logits_via_embedding: tie the output layer to the token embedding (original T5) instead
        of the separate ``decoder/logits_dense`` of T5.1.1 / mT5.
      float32_attention_logits: compute attention logits and softmax in float32 whatever
        ``dtype`` is (t5x's ``float32_attention_logits``).
      layer_norm_epsilon: the RMS norm's epsilon.
    """

    vocab_size: int
    emb_dim: int
    num_heads: int
    head_dim: int
    mlp_dim: int
    num_encoder_layers: int
    num_decoder_layers: int
    relative_attention_num_buckets: int
    relative_attention_max_distance: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    mlp_activations: Sequence[str] = ("gelu", "linear")
    logits_via_embedding: bool = False
    float32_attention_logits: bool = False
    layer_norm_epsilon: float = 1e-6

    PRESET_NAMES: ClassVar[tuple[str, ...]] = tuple(
        f"{family}_{size}" for family in ("t5_1_1", "mt5") for size in _PRESETS
    ) + ("t5_1_1_tiny",)

    def __post_init__(self):
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
        for name in (
            "vocab_size",
            "emb_dim",
            "num_heads",
            "head_dim",
            "mlp_dim",
            "num_encoder_layers",
            "num_decoder_layers",
            "relative_attention_num_buckets",
            "relative_attention_max_distance",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"T5Config.{name} must be a positive int, got {value!r}")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(
                "T5Config.relative_attention_num_buckets must be >= 4 (the encoder splits them "
                f"by direction, then into exact and log-spaced halves), got "
                f"{self.relative_attention_num_buckets}"
            )
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
            raise ValueError(
                "T5Config.relative_attention_max_distance must exceed "
                f"relative_attention_num_buckets // 2 = {self.relative_attention_num_buckets // 2}"
                f", got {self.relative_attention_max_distance}"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
        try:
            dt = jnp.dtype(self.dtype)
        except TypeError as e:
            raise ValueError(f"T5Config.dtype {self.dtype!r} is not a dtype") from e
        if not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(f"T5Config.dtype must be a floating dtype, got {dt}")
        if not self.mlp_activations:
            raise ValueError("T5Config.mlp_activations must name at least one activation")
        for act in self.mlp_activations:
            if act != "linear" and not callable(getattr(nn, str(act), None)):
                raise ValueError(
                    f"T5Config.mlp_activations: unknown activation {act!r} (use 'linear' or a "
                    "flax.linen function name such as 'gelu' or 'relu')"
                )

    @classmethod
    def preset(cls, name: str, **overrides) -> T5Config:
        """The config called ``name`` (one of ``PRESET_NAMES``) with ``overrides`` applied."""
        if name == "t5_1_1_tiny":
            # prompt-tuning's configs/test/t5_1_1_tiny.gin over flaxformer's T5.1.1 base.
            base = dict(
                vocab_size=_T5_VOCAB,
                emb_dim=4,
                num_heads=2,
                head_dim=2,
                mlp_dim=8,
                num_encoder_layers=2,
                num_decoder_layers=2,
                relative_attention_num_buckets=4,
                relative_attention_max_distance=8,
            )
        else:
            family, _, size = name.rpartition("_")
            if family not in ("t5_1_1", "mt5") or size not in _PRESETS:
                raise ValueError(f"unknown T5 preset {name!r}; choose from {cls.PRESET_NAMES}")
            dims = dict(_PRESETS[size])
            layers = dims.pop("num_layers")
            base = dict(
                vocab_size=_T5_VOCAB if family == "t5_1_1" else _MT5_VOCAB,
                num_encoder_layers=layers,
                num_decoder_layers=layers,
                relative_attention_num_buckets=32,
                relative_attention_max_distance=128,
                **dims,
            )
        return cls(**{**base, **overrides})

    @classmethod
    def t5_1_1_tiny(cls, **overrides) -> T5Config:
        """E=4, H=2, D=2, F=8, 2+2 layers, 4 buckets, max distance 8: the tiny checkpoint."""
        return cls.preset("t5_1_1_tiny", **overrides)

    @classmethod
    def t5_1_1_small(cls, **overrides) -> T5Config:
        """E=512, H=6, D=64, F=1024, 8+8 layers, V=32128 (77M parameters)."""
        return cls.preset("t5_1_1_small", **overrides)

    @classmethod
    def t5_1_1_base(cls, **overrides) -> T5Config:
        """E=768, H=12, D=64, F=2048, 12+12 layers, V=32128 (248M parameters)."""
        return cls.preset("t5_1_1_base", **overrides)

    @classmethod
    def t5_1_1_large(cls, **overrides) -> T5Config:
        """E=1024, H=16, D=64, F=2816, 24+24 layers, V=32128 (783M parameters)."""
        return cls.preset("t5_1_1_large", **overrides)

    @classmethod
    def t5_1_1_xl(cls, **overrides) -> T5Config:
        """E=2048, H=32, D=64, F=5120, 24+24 layers, V=32128 (2.8B parameters)."""
        return cls.preset("t5_1_1_xl", **overrides)

    @classmethod
    def t5_1_1_xxl(cls, **overrides) -> T5Config:
        """E=4096, H=64, D=64, F=10240, 24+24 layers, V=32128 (11B parameters)."""
        return cls.preset("t5_1_1_xxl", **overrides)

    @classmethod
    def mt5_small(cls, **overrides) -> T5Config:
        """T5.1.1-small dims with the mT5 vocabulary V=250112 (300M parameters)."""
        return cls.preset("mt5_small", **overrides)

    @classmethod
    def mt5_base(cls, **overrides) -> T5Config:
        """T5.1.1-base dims with V=250112 (580M parameters)."""
        return cls.preset("mt5_base", **overrides)

    @classmethod
    def mt5_large(cls, **overrides) -> T5Config:
        """T5.1.1-large dims with V=250112 (1.2B parameters)."""
        return cls.preset("mt5_large", **overrides)

    @classmethod
    def mt5_xl(cls, **overrides) -> T5Config:
        """T5.1.1-XL dims with V=250112 (3.7B parameters)."""
        return cls.preset("mt5_xl", **overrides)

    @classmethod
    def mt5_xxl(cls, **overrides) -> T5Config:
        """T5.1.1-XXL dims with V=250112 (13B parameters)."""
        return cls.preset("mt5_xxl", **overrides)


def relative_position_bucket(
    relative_position: np.ndarray, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """T5's bucket of each relative position (memory - query), as t5x computes it.

    Half the buckets (per direction when ``bidirectional``) hold the exact distances 0, 1, ...;
    the rest are log-spaced up to ``max_distance``, beyond which all share the last bucket.
    In the causal case every future position (``relative_position > 0``) falls in bucket 0.
    The arithmetic is t5x's in float32, including its ``+ eps`` inside the log (which moves
    distances that land exactly on a bucket edge up a bucket), with the float64
    ``log(max_distance / max_exact)`` rounded to float32 as NumPy 1.x did when t5x/flaxformer
    checkpoints were trained. Runs in NumPy at trace time, so buckets are program constants.

    Args:
      relative_position: int array of ``memory_position - query_position``, any shape.
      bidirectional: the encoder's two-sided buckets (True) or the decoder's causal ones.
      num_buckets: N.
      max_distance: the distance from which all positions share the last bucket.

    Returns:
      int32 array of the same shape with values in ``[0, N)``.
    """
    n = -np.asarray(relative_position, dtype=np.int32)
    ret = np.zeros(n.shape, np.int32)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    eps = np.finfo(np.float32).eps
    log_range = np.float32(np.log(max_distance / max_exact))
    scaled = (
        np.log(n.astype(np.float32) / np.float32(max_exact) + eps)
        / log_range
        * np.float32(num_buckets - max_exact)
    )
    val_if_large = np.minimum(max_exact + scaled.astype(np.int32), num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large).astype(np.int32)


def _bucket_table(q_len: int, k_len: int, config: T5Config, bidirectional: bool) -> np.ndarray:
    rel = np.arange(k_len, dtype=np.int32)[None, :] - np.arange(q_len, dtype=np.int32)[:, None]
    return relative_position_bucket(
        rel,
        bidirectional=bidirectional,
        num_buckets=config.relative_attention_num_buckets,
        max_distance=config.relative_attention_max_distance,
    )


def _mask_to_bias(mask: jax.Array, dtype) -> jax.Array:
    return jnp.where(mask, 0.0, _MASK_BIAS).astype(dtype)


# --- Modules. Parameter names and layouts are t5x's (t5x/examples/t5/{layers,network}.py). ---


class _Dense(nn.Module):
    """Bias-free ``x @ kernel`` with t5x's flat float32 kernel ``[in_dim, out_dim]``."""

    in_dim: int
    out_dim: int
    dtype: Any
    kernel_init: Callable

    def setup(self):
        self.kernel = self.param(
            "kernel", self.kernel_init, (self.in_dim, self.out_dim), jnp.float32
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x.astype(self.dtype), self.kernel.astype(self.dtype))


class _RMSNorm(nn.Module):
    """T5's layer norm: ``x / sqrt(mean(x^2) + eps) * scale``, no mean, no bias."""

    features: int
    epsilon: float
    dtype: Any

    def setup(self):
        self.scale = self.param("scale", nn.initializers.ones, (self.features,), jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.promote_types(jnp.float32, x.dtype))  # float32 at least, as t5x
        y = x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
        return y.astype(self.dtype) * self.scale.astype(self.dtype)


class _Embed(nn.Module):
    """The shared token embedding ``[V, E]`` (t5x ``token_embedder``)."""

    num_embeddings: int
    features: int
    dtype: Any

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.initializers.normal(stddev=1.0),
            (self.num_embeddings, self.features),
            jnp.float32,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        # Out-of-vocabulary ids (only possible under jit: host inputs are checked first) give
        # NaN rows instead of XLA's silent clamping to the last row.
        ids = jnp.where(ids < 0, self.num_embeddings, ids)
        rows = jnp.take(self.embedding, ids, axis=0, mode="fill", fill_value=jnp.nan)
        return rows.astype(self.dtype)

    def attend(self, query: jax.Array) -> jax.Array:
        dt = jnp.promote_types(jnp.float32, query.dtype)  # t5x's attend_dtype=float32
        return jnp.dot(query.astype(dt), self.embedding.astype(dt).T)


class _RelativePositionBias(nn.Module):
    """t5x ``relpos_bias``: a learned ``rel_embedding [H, N]`` indexed by position bucket."""

    config: T5Config

    def setup(self):
        cfg = self.config
        self.rel_embedding = self.param(
            "rel_embedding",
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            (cfg.num_heads, cfg.relative_attention_num_buckets),
            jnp.float32,
        )

    def __call__(self, q_len: int, k_len: int, bidirectional: bool) -> jax.Array:
        """Returns the bias ``[1, H, q_len, k_len]``."""
        buckets = _bucket_table(q_len, k_len, self.config, bidirectional)
        bias = jnp.take(self.rel_embedding, jnp.asarray(buckets), axis=1)
        return bias[None].astype(self.config.dtype)

    def causal_row(self, index: jax.Array, length: int) -> jax.Array:
        """The decoder bias of query position ``index`` over ``length`` keys: ``[1, H, 1, L]``."""
        table = jnp.asarray(_bucket_table(length, length, self.config, bidirectional=False))
        row = lax.dynamic_index_in_dim(table, index, axis=0, keepdims=True)
        return jnp.take(self.rel_embedding, row, axis=1)[None].astype(self.config.dtype)


class _Attention(nn.Module):
    """Multi-head dot-product attention with t5x's ``query/key/value/out`` kernels.

    Kernels are flat: ``query [E, H*D]`` (heads the outer index of the columns), ``out
    [H*D, E]``. Logits are not scaled by ``1/sqrt(D)`` at run time; as in t5x the factor is in
    the query kernel's initialiser.
    """

    config: T5Config

    def setup(self):
        cfg = self.config
        inner = cfg.num_heads * cfg.head_dim
        init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        scale = float(np.sqrt(cfg.head_dim))
        query_init = lambda *a: init(*a) / jnp.asarray(scale, a[-1])
        self.query = _Dense(cfg.emb_dim, inner, cfg.dtype, query_init)
        self.key = _Dense(cfg.emb_dim, inner, cfg.dtype, init)
        self.value = _Dense(cfg.emb_dim, inner, cfg.dtype, init)
        self.out = _Dense(inner, cfg.emb_dim, cfg.dtype, init)
        # t5x drops whole key columns of the attention weights (broadcast over queries).
        self.weights_dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.config.num_heads, self.config.head_dim)

    def project_kv(self, inputs_kv: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[B, T, E]`` -> keys and values ``[B, T, H, D]``."""
        return self._heads(self.key(inputs_kv)), self._heads(self.value(inputs_kv))

    def attend(self, inputs_q, key, value, bias, deterministic: bool) -> jax.Array:
        """Queries from ``inputs_q [B, Tq, E]`` over ``key/value [B, Tk, H, D]``.

        ``bias`` (mask and relative position) broadcasts to ``[B, H, Tq, Tk]``.
        """
        cfg = self.config
        query = self._heads(self.query(inputs_q))
        if cfg.float32_attention_logits:
            query, key = query.astype(jnp.float32), key.astype(jnp.float32)
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
        logits = logits + bias.astype(logits.dtype)
        weights = jax.nn.softmax(logits).astype(cfg.dtype)
        weights = self.weights_dropout(weights, deterministic=deterministic)
        x = jnp.einsum("bhqk,bkhd->bqhd", weights, value.astype(cfg.dtype))
        return self.out(x.reshape(*x.shape[:2], cfg.num_heads * cfg.head_dim))

    def __call__(self, inputs_q, inputs_kv, bias, *, deterministic: bool) -> jax.Array:
        key, value = self.project_kv(inputs_kv)
        return self.attend(inputs_q, key, value, bias, deterministic)

    def init_self_cache(self, batch: int, length: int) -> None:
        shape = (batch, length, self.config.num_heads, self.config.head_dim)
        self.put_variable("cache", "cached_key", jnp.zeros(shape, self.config.dtype))
        self.put_variable("cache", "cached_value", jnp.zeros(shape, self.config.dtype))

    def init_cross_cache(self, encoded: jax.Array) -> None:
        key, value = self.project_kv(encoded)
        self.put_variable("cache", "cached_key", key)
        self.put_variable("cache", "cached_value", value)

    def self_step(self, x, index, bias, *, deterministic: bool) -> jax.Array:
        """One decoder position ``x [B, 1, E]`` written at ``index`` into the key/value cache."""
        key, value = self.project_kv(x)
        start = (0, index, 0, 0)
        cached_key = lax.dynamic_update_slice(self.get_variable("cache", "cached_key"), key, start)
        cached_value = lax.dynamic_update_slice(
            self.get_variable("cache", "cached_value"), value, start
        )
        self.put_variable("cache", "cached_key", cached_key)
        self.put_variable("cache", "cached_value", cached_value)
        return self.attend(x, cached_key, cached_value, bias, deterministic)

    def cross_step(self, x, bias, *, deterministic: bool) -> jax.Array:
        key = self.get_variable("cache", "cached_key")
        value = self.get_variable("cache", "cached_value")
        return self.attend(x, key, value, bias, deterministic)


class _Mlp(nn.Module):
    """t5x ``MlpBlock``: ``wo(prod_i act_i(wi_i x))``; one branch is named ``wi``."""

    config: T5Config

    def setup(self):
        cfg = self.config
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
        branches = [_Dense(cfg.emb_dim, cfg.mlp_dim, cfg.dtype, init) for _ in cfg.mlp_activations]
        # Flax names a list attribute's modules wi_0, wi_1, ... as t5x does.
        self.wi = branches[0] if len(branches) == 1 else branches
        self.wo = _Dense(cfg.mlp_dim, cfg.emb_dim, cfg.dtype, init)
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        branches = [self.wi] if len(self.config.mlp_activations) == 1 else self.wi
        h = None
        for dense, act in zip(branches, self.config.mlp_activations, strict=True):
            y = dense(x)
            y = y if act == "linear" else getattr(nn, act)(y)
            h = y if h is None else h * y
        return self.wo(self.dropout(h, deterministic=deterministic))


class _EncoderLayer(nn.Module):
    config: T5Config

    def setup(self):
        cfg = self.config
        norm = functools.partial(_RMSNorm, cfg.emb_dim, cfg.layer_norm_epsilon, cfg.dtype)
        self.pre_attention_layer_norm = norm()
        self.attention = _Attention(cfg)
        self.pre_mlp_layer_norm = norm()
        self.mlp = _Mlp(cfg)
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def __call__(self, x, bias, *, deterministic: bool):
        y = self.pre_attention_layer_norm(x)
        y = self.attention(y, y, bias, deterministic=deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        y = self.mlp(self.pre_mlp_layer_norm(x), deterministic=deterministic)
        return x + self.dropout(y, deterministic=deterministic)


class _DecoderLayer(nn.Module):
    config: T5Config

    def setup(self):
        cfg = self.config
        norm = functools.partial(_RMSNorm, cfg.emb_dim, cfg.layer_norm_epsilon, cfg.dtype)
        self.pre_self_attention_layer_norm = norm()
        self.self_attention = _Attention(cfg)
        self.pre_cross_attention_layer_norm = norm()
        self.encoder_decoder_attention = _Attention(cfg)
        self.pre_mlp_layer_norm = norm()
        self.mlp = _Mlp(cfg)
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def _rest(self, x, cross, *, deterministic: bool):
        """Residual around cross-attention (``cross``: a function of the normed input), MLP."""
        y = cross(self.pre_cross_attention_layer_norm(x))
        x = x + self.dropout(y, deterministic=deterministic)
        y = self.mlp(self.pre_mlp_layer_norm(x), deterministic=deterministic)
        return x + self.dropout(y, deterministic=deterministic)

    def __call__(self, x, encoded, self_bias, cross_bias, *, deterministic: bool):
        y = self.pre_self_attention_layer_norm(x)
        y = self.self_attention(y, y, self_bias, deterministic=deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        cross = lambda h: self.encoder_decoder_attention(
            h, encoded, cross_bias, deterministic=deterministic
        )
        return self._rest(x, cross, deterministic=deterministic)

    def init_cache(self, encoded, length: int) -> None:
        self.self_attention.init_self_cache(encoded.shape[0], length)
        self.encoder_decoder_attention.init_cross_cache(encoded)

    def step(self, x, index, self_bias, cross_bias, *, deterministic: bool):
        y = self.pre_self_attention_layer_norm(x)
        y = self.self_attention.self_step(y, index, self_bias, deterministic=deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        cross = lambda h: self.encoder_decoder_attention.cross_step(
            h, cross_bias, deterministic=deterministic
        )
        return self._rest(x, cross, deterministic=deterministic)


class _Encoder(nn.Module):
    config: T5Config
    embedder: nn.Module

    def setup(self):
        cfg = self.config
        self.relpos_bias = _RelativePositionBias(cfg)
        self.layers = [_EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers)]
        self.encoder_norm = _RMSNorm(cfg.emb_dim, cfg.layer_norm_epsilon, cfg.dtype)
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
        self.output_dropout = nn.Dropout(cfg.dropout_rate)  # t5x: not broadcast here

    def __call__(
        self, tokens: jax.Array, *, deterministic: bool, prefix_embeddings: jax.Array | None = None
    ) -> jax.Array:
        valid = tokens > 0
        x = self.embedder(tokens)
        if prefix_embeddings is not None:
            # Prompt tuning (Lester et al. 2021): P vectors before the embedded input, always
            # attended to (the mask gets P ones in front).
            prefix = jnp.broadcast_to(
                prefix_embeddings.astype(x.dtype), (x.shape[0], *prefix_embeddings.shape[-2:])
            )
            x = jnp.concatenate([prefix, x], axis=1)
            valid = jnp.concatenate([jnp.ones(prefix.shape[:2], bool), valid], axis=1)
        mask = valid[:, None, :, None] & valid[:, None, None, :]
        length = x.shape[1]
        # One relative-position table per stack, shared by its layers (self-attention only).
        bias = _mask_to_bias(mask, self.config.dtype) + self.relpos_bias(length, length, True)
        x = self.dropout(x, deterministic=deterministic)
        for layer in self.layers:
            x = layer(x, bias, deterministic=deterministic)
        return self.output_dropout(self.encoder_norm(x), deterministic=deterministic)


class _Decoder(nn.Module):
    config: T5Config
    embedder: nn.Module

    def setup(self):
        cfg = self.config
        self.relpos_bias = _RelativePositionBias(cfg)
        self.layers = [_DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)]
        self.decoder_norm = _RMSNorm(cfg.emb_dim, cfg.layer_norm_epsilon, cfg.dtype)
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
        if not cfg.logits_via_embedding:
            self.logits_dense = _Dense(
                cfg.emb_dim,
                cfg.vocab_size,
                jnp.promote_types(jnp.float32, cfg.dtype),  # t5x: float32 logits
                nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            )

    def _logits(self, y: jax.Array, *, deterministic: bool) -> jax.Array:
        y = self.dropout(self.decoder_norm(y), deterministic=deterministic)
        if self.config.logits_via_embedding:
            # Tied output layer: t5x rescales by 1/sqrt(E).
            return self.embedder.attend(y) / np.sqrt(y.shape[-1])
        return self.logits_dense(y)

    def __call__(self, encoded, tokens, self_mask, cross_mask, *, deterministic: bool):
        cfg = self.config
        length = tokens.shape[1]
        self_bias = _mask_to_bias(self_mask, cfg.dtype) + self.relpos_bias(length, length, False)
        cross_bias = _mask_to_bias(cross_mask, cfg.dtype)
        y = self.dropout(self.embedder(tokens), deterministic=deterministic)
        for layer in self.layers:
            y = layer(y, encoded, self_bias, cross_bias, deterministic=deterministic)
        return self._logits(y, deterministic=deterministic)

    def init_cache(self, encoded: jax.Array, length: int) -> None:
        for layer in self.layers:
            layer.init_cache(encoded, length)
        self.put_variable("cache", "cache_index", jnp.zeros((), jnp.int32))

    def step(self, token, cross_mask, *, deterministic: bool) -> jax.Array:
        cfg = self.config
        index = self.get_variable("cache", "cache_index")
        length = self.layers[0].self_attention.get_variable("cache", "cached_key").shape[1]
        causal = jnp.arange(length) <= index
        self_bias = _mask_to_bias(causal, cfg.dtype) + self.relpos_bias.causal_row(index, length)
        cross_bias = _mask_to_bias(cross_mask, cfg.dtype)
        y = self.dropout(self.embedder(token), deterministic=deterministic)
        for layer in self.layers:
            y = layer.step(y, index, self_bias, cross_bias, deterministic=deterministic)
        self.put_variable("cache", "cache_index", index + 1)
        return self._logits(y, deterministic=deterministic)


class T5(nn.Module):
    """T5.1.1 / mT5 encoder-decoder with t5x's parameter tree (see the package docstring).

    Call as ``T5(cfg).apply({'params': params}, encoder_input_tokens, decoder_input_tokens,
    decoder_target_tokens=None, enable_dropout=False)``; dropout needs ``rngs={'dropout': key}``.
    Parameter shapes are checked against the config (:func:`check_params`) and host token ids
    against the vocabulary (:func:`check_tokens`) when a method is traced.

    Autoregressive decoding uses a ``'cache'`` collection: ``init_cache`` stores, for each
    decoder layer, zeroed self-attention keys/values ``[B, L, H, D]`` and the cross-attention
    keys/values of the encoder output (computed once, not every step as in t5x), plus a
    ``cache_index``; ``decode(..., decode=True)`` then consumes one token per call.

    Attributes:
      config: a :class:`T5Config`.
    """

    config: T5Config

    def setup(self):
        cfg = self.config
        self.token_embedder = _Embed(cfg.vocab_size, cfg.emb_dim, cfg.dtype)
        self.encoder = _Encoder(cfg, self.token_embedder)
        self.decoder = _Decoder(cfg, self.token_embedder)

    def _check(self, **tokens) -> None:
        for name, value in tokens.items():
            if value is not None:
                check_tokens(value, self.config, name=name)
        if not self.is_initializing():
            check_params(self.variables.get("params", {}), self.config)

    def __call__(
        self,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        decoder_target_tokens: jax.Array | None = None,
        *,
        enable_dropout: bool = False,
        prefix_embeddings: jax.Array | None = None,
    ) -> jax.Array:
        """Teacher-forced logits of the whole model.

        Args:
          encoder_input_tokens: int ``[B, T_enc]``, 0 = padding (masked out of attention).
          decoder_input_tokens: int ``[B, T_dec]``, the targets shifted right behind the start
            token 0.
          decoder_target_tokens: int ``[B, T_dec]`` or None. None: causal masking only, as in
            t5x decode mode. Given: its padding (0) positions are also masked as queries and
            keys of self-attention and as queries of cross-attention (t5x training).
          enable_dropout: apply dropout (needs a ``'dropout'`` rng).
          prefix_embeddings: optional soft prompt ``[P, E]`` or ``[B, P, E]`` placed before the
            embedded encoder input (prompt tuning); the encoder self-attention and the
            cross-attention masks get P ones in front. None: the plain model (unchanged).

        Returns:
          Logits ``[B, T_dec, V]`` (float32, or the wider of float32 and ``config.dtype``).
        """
        self._check(
            encoder_input_tokens=encoder_input_tokens,
            decoder_input_tokens=decoder_input_tokens,
            decoder_target_tokens=decoder_target_tokens,
        )
        if decoder_target_tokens is not None and (
            decoder_target_tokens.shape != decoder_input_tokens.shape
        ):
            raise ValueError(
                f"decoder_target_tokens has shape {decoder_target_tokens.shape}, "
                f"decoder_input_tokens {decoder_input_tokens.shape}; they must match"
            )
        if encoder_input_tokens.shape[0] != decoder_input_tokens.shape[0]:
            raise ValueError(
                f"encoder_input_tokens has batch {encoder_input_tokens.shape[0]} but "
                f"decoder_input_tokens {decoder_input_tokens.shape[0]}"
            )
        _check_prefix(prefix_embeddings, self.config, encoder_input_tokens.shape[0])
        encoded = self.encoder(
            encoder_input_tokens,
            deterministic=not enable_dropout,
            prefix_embeddings=prefix_embeddings,
        )
        return self._decode_full(
            encoded,
            prefixed_mask_tokens(encoder_input_tokens, prefix_embeddings),
            decoder_input_tokens,
            decoder_target_tokens,
            deterministic=not enable_dropout,
        )

    def encode(
        self,
        encoder_input_tokens: jax.Array,
        *,
        enable_dropout: bool = False,
        prefix_embeddings: jax.Array | None = None,
    ):
        """Encoder output ``[B, T_enc, E]`` (after ``encoder_norm``) of int ``[B, T_enc]``.

        With ``prefix_embeddings`` ``[P, E]`` / ``[B, P, E]`` (a soft prompt) the output is
        ``[B, P + T_enc, E]``; decode against it with the encoder tokens extended by
        :func:`prefixed_mask_tokens`.
        """
        self._check(encoder_input_tokens=encoder_input_tokens)
        _check_prefix(prefix_embeddings, self.config, encoder_input_tokens.shape[0])
        return self.encoder(
            encoder_input_tokens,
            deterministic=not enable_dropout,
            prefix_embeddings=prefix_embeddings,
        )

    def _decode_full(
        self, encoded, encoder_tokens, decoder_tokens, target_tokens, *, deterministic
    ):
        length = decoder_tokens.shape[1]
        positions = jnp.arange(length)
        self_mask = (positions[:, None] >= positions[None, :])[None, None]
        if target_tokens is None:
            query_valid = jnp.ones(decoder_tokens.shape, bool)
        else:
            query_valid = target_tokens > 0
            self_mask = self_mask & query_valid[:, None, :, None] & query_valid[:, None, None, :]
        cross_mask = query_valid[:, None, :, None] & (encoder_tokens > 0)[:, None, None, :]
        return self.decoder(
            encoded, decoder_tokens, self_mask, cross_mask, deterministic=deterministic
        )

    def decode(
        self,
        encoded: jax.Array | None,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        decoder_target_tokens: jax.Array | None = None,
        *,
        enable_dropout: bool = False,
        decode: bool = False,
    ) -> jax.Array:
        """Decoder logits given the encoder output.

        Args:
          encoded: ``[B, T_enc, E]`` from :meth:`encode`; unused (may be None) when ``decode``,
            since the cache holds the cross-attention keys and values.
          encoder_input_tokens: int ``[B, T_enc]``, for the cross-attention padding mask.
          decoder_input_tokens: int ``[B, T_dec]``; ``[B, 1]`` when ``decode``.
          decoder_target_tokens: as in ``__call__``; must be None when ``decode``.
          enable_dropout: apply dropout (needs a ``'dropout'`` rng).
          decode: one autoregressive step at the cache's ``cache_index`` (apply with
            ``mutable=['cache']`` and a cache from :meth:`init_cache`); the index advances by 1.
            The cache must not be stepped more than its length L times.

        Returns:
          Logits ``[B, T_dec, V]`` (``[B, 1, V]`` when ``decode``).
        """
        self._check(
            encoder_input_tokens=encoder_input_tokens,
            decoder_input_tokens=decoder_input_tokens,
            decoder_target_tokens=decoder_target_tokens,
        )
        if not decode:
            if encoded is None:
                raise ValueError("decode(): `encoded` is required unless decode=True")
            return self._decode_full(
                encoded,
                encoder_input_tokens,
                decoder_input_tokens,
                decoder_target_tokens,
                deterministic=not enable_dropout,
            )
        if decoder_target_tokens is not None:
            raise ValueError("decode(decode=True) takes no decoder_target_tokens")
        if decoder_input_tokens.shape[1] != 1:
            raise ValueError(
                "decode(decode=True) feeds one token per call: decoder_input_tokens must be "
                f"[B, 1], got shape {decoder_input_tokens.shape}"
            )
        if not self.decoder.has_variable("cache", "cache_index"):
            raise ValueError(
                "decode(decode=True) needs a cache: apply T5.init_cache with mutable=['cache'] "
                "first and pass {'params': ..., 'cache': ...}"
            )
        cross_mask = (encoder_input_tokens > 0)[:, None, None, :]
        return self.decoder.step(decoder_input_tokens, cross_mask, deterministic=not enable_dropout)

    def init_cache(self, encoded: jax.Array, max_decode_length: int) -> None:
        """Fills the ``'cache'`` collection for decoding up to ``max_decode_length`` tokens.

        Args:
          encoded: ``[B, T_enc, E]`` from :meth:`encode`.
          max_decode_length: L, the number of decoder positions the cache holds.
        """
        if not self.is_initializing():
            check_params(self.variables.get("params", {}), self.config)
        if encoded.ndim != 3 or encoded.shape[-1] != self.config.emb_dim:
            raise ValueError(
                f"init_cache: encoded must be [B, T_enc, {self.config.emb_dim}], "
                f"got shape {encoded.shape}"
            )
        if int(max_decode_length) < 1:
            raise ValueError(f"max_decode_length must be >= 1, got {max_decode_length}")
        self.decoder.init_cache(encoded.astype(self.config.dtype), int(max_decode_length))


# --- Soft-prompt helpers (prompt tuning). ---


def prefixed_mask_tokens(tokens: jax.Array, prefix_embeddings: jax.Array | None) -> jax.Array:
    """``tokens [B, T]`` with P ones in front when a ``[.., P, E]`` prefix is given.

    The decoder reads the encoder tokens only for the cross-attention padding mask (id > 0),
    so these stand-in ids make the prompt positions attendable.
    """
    if prefix_embeddings is None:
        return tokens
    ones = jnp.ones((tokens.shape[0], prefix_embeddings.shape[-2]), tokens.dtype)
    return jnp.concatenate([ones, tokens], axis=1)


def _check_prefix(prefix, config: T5Config, batch: int) -> None:
    if prefix is None:
        return
    shape = tuple(getattr(prefix, "shape", ()))
    if len(shape) not in (2, 3) or shape[-1] != config.emb_dim or shape[-2] < 1:
        raise ValueError(
            f"prefix_embeddings must be [P, {config.emb_dim}] or [B, P, {config.emb_dim}] "
            f"(emb_dim {config.emb_dim}), got shape {shape}"
        )
    if len(shape) == 3 and shape[0] not in (1, batch):
        raise ValueError(f"prefix_embeddings has batch {shape[0]} but the input has {batch}")


# --- Input and parameter checks. ---


def check_tokens(tokens: Any, config: T5Config, *, name: str = "tokens") -> None:
    """Raises ValueError unless ``tokens`` is an int ``[B, T]`` array of ids in ``[0, V)``.

    The value range is checked only for concrete (host or committed device) arrays; under
    ``jit`` an out-of-range id cannot raise, and the model gives NaN logits for it instead.

    Args:
      tokens: int ``[B, T]``.
      config: supplies V.
      name: how the error message calls the array.
    """
    shape = getattr(tokens, "shape", None)
    dtype = getattr(tokens, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be an int array [batch, length], got {type(tokens)}")
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be [batch, length], got shape {tuple(shape)}")
    if isinstance(tokens, jax.core.Tracer) or 0 in shape:
        return
    values = np.asarray(tokens)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= config.vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} holds token id {bad}, outside the vocabulary [0, {config.vocab_size})"
        )


@functools.lru_cache(maxsize=64)
def param_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """``{'encoder/layers_0/attention/query/kernel': (E, H*D), ...}`` for ``config``."""
    dummy = jnp.zeros((1, 1), jnp.int32)
    # parent=None: this may run while another T5 is being applied (check_params at trace
    # time), and a module built there would otherwise become its submodule.
    model = T5(config, parent=None)
    tree = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, dummy)["params"])
    return {
        "/".join(str(k.key) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, path + "/"))
        else:
            out[path] = v
    return out


def check_params(params: Mapping, config: T5Config) -> None:
    """Raises ValueError naming the first parameter (in sorted path order) that ``config``
    does not expect, lacks, or expects with another shape (both shapes in the message).

    Args:
      params: the tree t5x keeps under ``target`` (not wrapped in ``{'params': ...}``).
      config: the model config.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a nested dict of arrays, got {type(params).__name__}")
    if len(params) == 1 and next(iter(params)) in ("params", "target"):
        key = next(iter(params))
        raise ValueError(f"params is wrapped in {{'{key}': ...}}; pass params['{key}']")
    expected = param_shapes(config)
    got = _flatten(params)
    for path in sorted(set(expected) | set(got)):
        if path not in got:
            raise ValueError(
                f"parameter '{path}' is missing (the config expects shape {expected[path]})"
            )
        leaf = got[path]
        shape = tuple(getattr(leaf, "shape", ()))
        if path not in expected:
            raise ValueError(
                f"unexpected parameter '{path}' with shape {shape} (not in this config's T5)"
            )
        if shape != expected[path]:
            hint = ""
            if path in ("token_embedder/embedding", "decoder/logits_dense/kernel"):
                hint = f" (vocab_size={config.vocab_size}, emb_dim={config.emb_dim})"
            raise ValueError(
                f"parameter '{path}' has shape {shape} but the config expects "
                f"{expected[path]}{hint}"
            )
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"parameter '{path}' must be a float array, got dtype {dtype}")


def init_params(key: jax.Array, config: T5Config) -> dict:
    """Fresh parameters with t5x's initialisers.

    Token embedding N(0, 1); attention kernels ``variance_scaling(1, fan_in, normal)`` with the
    query kernel divided by ``sqrt(D)`` (t5x's stand-in for run-time logit scaling); MLP and
    ``logits_dense`` kernels ``variance_scaling(1, fan_in, truncated_normal)``; relative
    position tables ``variance_scaling(1, fan_avg, uniform)``; norm scales 1. All float32.

    Args:
      key: PRNG key.
      config: the model config.

    Returns:
      The parameter tree (t5x names, unwrapped).
    """
    return _jitted_init(config)(key)


@functools.lru_cache(maxsize=16)
def _jitted_init(config: T5Config) -> Callable:
    dummy = jnp.zeros((1, 1), jnp.int32)
    model = T5(config, parent=None)
    return jax.jit(lambda k: model.init({"params": k}, dummy, dummy)["params"])
