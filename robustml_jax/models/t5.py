"""T5.1.1 / mT5 in Flax Linen, parameter-compatible with t5x, with legacy-checkpoint I/O.

The network reproduces t5x's ``examples/t5/network.py`` (and flaxformer's T5.1.1, whose
checkpoints share its names) exactly:

* RMS layer norm (epsilon 1e-6, ``scale`` only, computed in float32 at least); no biases;
* attention logits are not scaled by ``1/sqrt(head_dim)`` at run time: t5x folds the factor
  into the query kernel's initialiser (:func:`init_params` does the same);
* gated MLP ``wo(gelu(wi_0 x) * wi_1 x)`` with flax's default (tanh) ``gelu`` for T5.1.1;
* relative-position biases (t5x's float32 bucket formula with its ``+ eps``; bidirectional
  in the encoder, causal in the decoder), one table per stack shared by its layers and added
  to self-attention only; masked logits get ``-1e10``;
* an untied ``decoder/logits_dense`` for T5.1.1 / mT5 (``logits_via_embedding`` ties it);
* kernels stored flat as t5x does, e.g. ``attention/query/kernel [E, H*D]`` with the head the
  outer index of the columns, ``out/kernel [H*D, E]``.

Parameter tree (t5x names; ``params`` below is the tree t5x keeps under ``target``)::

    token_embedder/embedding                                   [V, E]
    encoder/relpos_bias/rel_embedding                          [H, N]
    encoder/layers_<i>/pre_attention_layer_norm/scale          [E]
    encoder/layers_<i>/attention/{query,key,value}/kernel      [E, H*D]
    encoder/layers_<i>/attention/out/kernel                    [H*D, E]
    encoder/layers_<i>/pre_mlp_layer_norm/scale                [E]
    encoder/layers_<i>/mlp/{wi_0,wi_1}/kernel                  [E, F]
    encoder/layers_<i>/mlp/wo/kernel                           [F, E]
    encoder/encoder_norm/scale                                 [E]
    decoder/relpos_bias/rel_embedding                          [H, N]
    decoder/layers_<i>/{pre_self_attention_layer_norm,pre_cross_attention_layer_norm,
                        pre_mlp_layer_norm}/scale              [E]
    decoder/layers_<i>/{self_attention,encoder_decoder_attention}/...  (as the encoder's)
    decoder/layers_<i>/mlp/...                                 (as the encoder's)
    decoder/decoder_norm/scale                                 [E]
    decoder/logits_dense/kernel                                [E, V]

Typical use::

    from robustml_jax.models import t5
    cfg = t5.T5Config.t5_1_1_tiny()
    params = t5.load_t5x_checkpoint(".../test_t5_1_1_tiny/checkpoint_3")
    t5.check_params(params, cfg)
    logits = jax.jit(t5.T5(cfg).apply)({"params": params}, enc_tokens, dec_inputs)
    decode = jax.jit(t5.beam_search, static_argnames=("config", "max_decode_len"))
    result = decode(params, enc_tokens, config=cfg, max_decode_len=32)

Shapes: B = batch, T_enc / T_dec = encoder / decoder lengths, L = max decode length,
K = beams, E = emb_dim, H = num_heads, D = head_dim, F = mlp_dim, V = vocab_size,
N = relative-attention buckets. Token id 0 is padding and the decoder start token; T5's EOS
is 1.
"""

from robustml_jax.models._t5_checkpoint import (
    choose_chunk_shape,
    load_t5x_checkpoint,
    read_zarr,
    save_t5x_checkpoint,
)
from robustml_jax.models._t5_decoding import (
    DecodeResult,
    beam_search,
    brevity_penalty,
    decode_step,
    greedy_decode,
    init_decode_cache,
)
from robustml_jax.models._t5_model import (
    T5,
    T5Config,
    check_params,
    check_tokens,
    init_params,
    param_shapes,
    prefixed_mask_tokens,
    relative_position_bucket,
)

__all__ = [
    "T5",
    "DecodeResult",
    "T5Config",
    "beam_search",
    "brevity_penalty",
    "check_params",
    "check_tokens",
    "choose_chunk_shape",
    "decode_step",
    "greedy_decode",
    "init_decode_cache",
    "init_params",
    "load_t5x_checkpoint",
    "param_shapes",
    "prefixed_mask_tokens",
    "read_zarr",
    "relative_position_bucket",
    "save_t5x_checkpoint",
]
