"""T5 speed: robustml_jax.models.t5 vs HuggingFace transformers' PyTorch T5, and the KV cache.

Same T5.1.1-small-shaped model (E=512, H=6, D=64, F=1024, V=32128, 32 buckets; fewer layers
than small's 8+8 by default to keep the run short), same random weights (ours, copied into
``T5ForConditionalGeneration``), same batch, same machine, one run each, on the CPU:

1. forward (teacher-forced logits) and one AdamW training step (mean token cross-entropy),
   median wall time; our jit compile times are reported separately; torch is timed with its
   default thread count and with one thread and the faster is compared (OpenMP's spinning
   threads collapse when other jobs share the cores);
2. agreement of the two implementations' logits on the same weights and inputs;
3. greedy decoding with the key/value cache vs re-running the full decoder every step
   (``greedy_decode(use_cache=False)``), plus beam search (K=4) with the cache.

PyTorch + transformers run in their own virtual environment, created here on first use (a
CPU torch build when pip can find one, else plain ``pip install torch transformers``)::

    python -m benchmarks.t5_speed          # 2+2 layers, B=4, 64 -> 16 tokens, decode 32
    python -m benchmarks.t5_speed --layers=8 --batch=8 --enc_len=128 --dec_len=32 --repeats=5

Writes ``benchmarks/results/t5_speed.json``. If torch/transformers cannot be installed, the JSON
says so and holds our numbers only.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import _sidevenv
from robustml_jax.core.results import write_results
from robustml_jax.models import t5

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_LAYERS = flags.DEFINE_integer("layers", 2, "encoder and decoder layers each (T5.1.1-small: 8)")
_BATCH = flags.DEFINE_integer("batch", 4, "batch size B")
_ENC_LEN = flags.DEFINE_integer("enc_len", 64, "encoder length")
_DEC_LEN = flags.DEFINE_integer("dec_len", 16, "decoder length (training / forward)")
_DECODE_LEN = flags.DEFINE_integer("decode_len", 32, "tokens generated in the decoding test")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed repetitions (median reported)")
_VENV = flags.DEFINE_string("venv", "/tmp/t5_torch_venv", "virtual env for torch+transformers")
_OUT = flags.DEFINE_string("out", str(RESULTS / "t5_speed.json"), "results file")

_TORCH_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np, torch, transformers
from transformers import T5Config, T5ForConditionalGeneration

spec = json.loads(sys.argv[1])
d = np.load(sys.argv[2])
cfg = T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
               layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0,
               eos_token_id=1, **spec["config"])
torch.manual_seed(0)
model = T5ForConditionalGeneration(cfg)
untied = model.lm_head.weight is model.shared.weight
if untied:  # transformers 5 always ties T5's lm_head to the embedding; T5.1.1 does not
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
state = {k: torch.from_numpy(np.ascontiguousarray(d[k])) for k in d.files if not k.startswith("_")}
missing, unexpected = model.load_state_dict(state, strict=False)
enc = torch.from_numpy(d["_enc"]).long()
dec = torch.from_numpy(d["_dec"]).long()
tgt = torch.from_numpy(d["_tgt"]).long()
mask = (enc > 0).long()

def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

model.eval()
with torch.no_grad():
    logits = model(input_ids=enc, attention_mask=mask, decoder_input_ids=dec).logits
np.save(sys.argv[3], logits.numpy())

def forward():
    with torch.no_grad():
        model(input_ids=enc, attention_mask=mask, decoder_input_ids=dec)

opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

def train_step():
    opt.zero_grad(set_to_none=True)
    out = model(input_ids=enc, attention_mask=mask, decoder_input_ids=dec).logits
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), tgt.reshape(-1),
                                             ignore_index=0)
    loss.backward()
    opt.step()

# OpenMP's spinning threads collapse on a shared, oversubscribed CPU; one thread may win.
per_threads = {}
for threads in sorted({torch.get_num_threads(), 1}, reverse=True):
    torch.set_num_threads(threads)
    model.eval()
    fwd = timed(forward, spec["repeats"])
    model.train()
    per_threads[threads] = {"forward_s": fwd, "train_step_s": timed(train_step, spec["repeats"])}
print(json.dumps({
    "forward_s": min(v["forward_s"] for v in per_threads.values()),
    "train_step_s": min(v["train_step_s"] for v in per_threads.values()),
    "by_threads": per_threads, "torch": torch.__version__,
    "transformers": transformers.__version__,
    "missing_keys": sorted(missing), "unexpected_keys": sorted(unexpected),
    "lm_head_untied_by_hand": untied,
}))
"""


def ensure_torch_venv(venv: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """Creates ``venv`` with torch + transformers; returns (python, note) or (None, why not)."""
    # A CPU build first (pinned where a local wheel exists), then whatever plain pip resolves.
    return _sidevenv.ensure_venv(
        venv,
        check="import torch, transformers",
        plans=[[["torch==2.13.0", "transformers"]], [["torch", "transformers"]]],
        base_python=sys.executable,
    )


def to_hf_state_dict(params: dict, cfg: t5.T5Config) -> dict[str, np.ndarray]:
    """Our t5x-named tree as HF ``T5ForConditionalGeneration`` weights (Linear: [out, in])."""
    sd = {"shared.weight": params["token_embedder"]["embedding"]}
    attn = lambda p, prefix: {
        f"{prefix}.{hf}.weight": np.asarray(p[ours]["kernel"]).T
        for ours, hf in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o"))
    }
    mlp = lambda p, prefix: {
        f"{prefix}.{w}.weight": np.asarray(p[w]["kernel"]).T for w in ("wi_0", "wi_1", "wo")
    }
    for stack, n in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
        p = params[stack]
        first = "SelfAttention"
        rel = np.asarray(p["relpos_bias"]["rel_embedding"]).T  # HF: [N, H], in block 0 only
        sd[f"{stack}.block.0.layer.0.{first}.relative_attention_bias.weight"] = rel
        for i in range(n):
            lp, b = p[f"layers_{i}"], f"{stack}.block.{i}.layer"
            if stack == "encoder":
                sd.update(attn(lp["attention"], f"{b}.0.SelfAttention"))
                sd[f"{b}.0.layer_norm.weight"] = lp["pre_attention_layer_norm"]["scale"]
                sd.update(mlp(lp["mlp"], f"{b}.1.DenseReluDense"))
                sd[f"{b}.1.layer_norm.weight"] = lp["pre_mlp_layer_norm"]["scale"]
            else:
                sd.update(attn(lp["self_attention"], f"{b}.0.SelfAttention"))
                sd[f"{b}.0.layer_norm.weight"] = lp["pre_self_attention_layer_norm"]["scale"]
                sd.update(attn(lp["encoder_decoder_attention"], f"{b}.1.EncDecAttention"))
                sd[f"{b}.1.layer_norm.weight"] = lp["pre_cross_attention_layer_norm"]["scale"]
                sd.update(mlp(lp["mlp"], f"{b}.2.DenseReluDense"))
                sd[f"{b}.2.layer_norm.weight"] = lp["pre_mlp_layer_norm"]["scale"]
        norm = "encoder_norm" if stack == "encoder" else "decoder_norm"
        sd[f"{stack}.final_layer_norm.weight"] = p[norm]["scale"]
    sd["lm_head.weight"] = np.asarray(params["decoder"]["logits_dense"]["kernel"]).T
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _compile(fn, *args, **kwargs):
    t0 = time.perf_counter()
    compiled = fn.lower(*args, **kwargs).compile()
    return compiled, time.perf_counter() - t0


def run_ours(cfg, params, enc, dec, tgt, repeats: int) -> tuple[dict, np.ndarray]:
    model = t5.T5(cfg)
    forward = jax.jit(lambda p, e, d: model.apply({"params": p}, e, d))
    fwd_c, fwd_compile = _compile(forward, params, enc, dec)
    logits = np.asarray(fwd_c(params, enc, dec))
    fwd_c(params, enc, dec).block_until_ready()  # warm
    fwd_s = _median_time(lambda: fwd_c(params, enc, dec), repeats)

    tx = optax.adamw(1e-4, weight_decay=1e-4)

    def loss_fn(p, e, d, y):
        out = model.apply({"params": p}, e, d, y)
        ce = optax.softmax_cross_entropy_with_integer_labels(out, y)
        w = (y > 0).astype(ce.dtype)
        return jnp.sum(ce * w) / jnp.sum(w)

    def train_step(p, opt_state, e, d, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, e, d, y)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    step = jax.jit(train_step, donate_argnums=(0, 1))
    p = jax.tree.map(jnp.copy, params)  # donated to the step; keep `params` for decoding
    opt_state = tx.init(p)
    step_c, step_compile = _compile(step, p, opt_state, enc, dec, tgt)
    p, opt_state, _ = step_c(p, opt_state, enc, dec, tgt)  # warm
    state = {"p": p, "o": opt_state}

    def one_step():
        state["p"], state["o"], loss = step_c(state["p"], state["o"], enc, dec, tgt)
        return loss

    train_s = _median_time(one_step, repeats)
    return {
        "forward_s": fwd_s,
        "forward_compile_s": fwd_compile,
        "train_step_s": train_s,
        "train_step_compile_s": step_compile,
    }, logits


def run_decoding(cfg, params, enc, decode_len: int, repeats: int) -> dict:
    out = {"max_decode_len": decode_len, "batch": int(enc.shape[0]), "eos_id": None}
    results = {}
    for name, use_cache in (("cached", True), ("full_decoder", False)):
        fn = jax.jit(
            t5.greedy_decode, static_argnames=("config", "max_decode_len", "eos_id", "use_cache")
        )
        kw = dict(config=cfg, max_decode_len=decode_len, eos_id=None, use_cache=use_cache)
        compiled, compile_s = _compile(fn, params, enc, **kw)
        results[name] = compiled(params, enc)
        out[f"greedy_{name}_compile_s"] = compile_s
        out[f"greedy_{name}_s"] = _median_time(lambda c=compiled: c(params, enc), repeats)
    out["kv_cache_speedup"] = out["greedy_full_decoder_s"] / out["greedy_cached_s"]
    out["same_tokens"] = bool(
        np.array_equal(results["cached"].sequences, results["full_decoder"].sequences)
    )
    beam = jax.jit(t5.beam_search, static_argnames=("config", "max_decode_len", "beam_size"))
    compiled, compile_s = _compile(beam, params, enc, config=cfg, max_decode_len=decode_len)
    out["beam4_compile_s"] = compile_s
    out["beam4_s"] = _median_time(lambda: compiled(params, enc), 1)
    return out


def main(argv):
    del argv
    cfg = t5.T5Config.t5_1_1_small(
        num_encoder_layers=_LAYERS.value, num_decoder_layers=_LAYERS.value
    )
    b, te, td = _BATCH.value, _ENC_LEN.value, _DEC_LEN.value
    rng = np.random.default_rng(0)
    enc = rng.integers(2, cfg.vocab_size, (b, te)).astype(np.int32)
    enc[b // 2 :, te * 3 // 4 :] = 0  # half the rows padded: exercises the encoder mask
    tgt = rng.integers(2, cfg.vocab_size, (b, td)).astype(np.int32)
    dec = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], axis=1)
    params = t5.init_params(jax.random.key(0), cfg)  # on the device, as torch's weights are

    py, venv_note = ensure_torch_venv(pathlib.Path(_VENV.value))
    out = {
        "machine": f"{os.cpu_count()} CPU cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "model": {
            "shape": "T5.1.1-small dims (E=512, H=6, D=64, F=1024, V=32128, 32 buckets), "
            f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers, float32",
            "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
        },
        "inputs": {"batch": b, "enc_len": te, "dec_len": td, "encoder_rows_padded": b // 2},
        "timing": f"median of {_REPEATS.value} runs after one warm-up; compile reported apart",
        "torch_venv": venv_note if py else f"NOT RUN: {venv_note}",
        "load_average_1m_at_start": os.getloadavg()[0],
    }
    ours, logits = run_ours(cfg, params, enc, dec, tgt, _REPEATS.value)
    out["ours"] = ours
    print("ours", json.dumps(ours), flush=True)
    if py:
        with tempfile.TemporaryDirectory() as tmp:
            arrays = to_hf_state_dict(jax.tree.map(np.asarray, params), cfg)
            np.savez(f"{tmp}/in.npz", _enc=enc, _dec=dec, _tgt=tgt, **arrays)
            script = pathlib.Path(tmp) / "run.py"
            script.write_text(_TORCH_SCRIPT)
            spec = {
                "repeats": _REPEATS.value,
                "config": dict(
                    vocab_size=cfg.vocab_size,
                    d_model=cfg.emb_dim,
                    d_kv=cfg.head_dim,
                    d_ff=cfg.mlp_dim,
                    num_layers=cfg.num_encoder_layers,
                    num_decoder_layers=cfg.num_decoder_layers,
                    num_heads=cfg.num_heads,
                    relative_attention_num_buckets=cfg.relative_attention_num_buckets,
                    relative_attention_max_distance=cfg.relative_attention_max_distance,
                ),
            }
            r = subprocess.run(
                [str(py), str(script), json.dumps(spec), f"{tmp}/in.npz", f"{tmp}/logits.npy"],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": ""},
            )
            if r.returncode != 0:
                out["hf_torch"] = f"FAILED: {r.stderr.strip()[-1500:]}"
            else:
                hf = json.loads(r.stdout.strip().splitlines()[-1])
                out["hf_torch"] = hf
                hf_logits = np.load(f"{tmp}/logits.npy")
                diff = np.abs(hf_logits - logits)
                out["logits_agreement"] = {
                    "max_abs_diff": float(diff.max()),
                    "max_abs_logit": float(np.abs(logits).max()),
                    "same_argmax_fraction": float(
                        np.mean(hf_logits.argmax(-1) == logits.argmax(-1))
                    ),
                }
                out["ratio_forward_ours_over_hf"] = ours["forward_s"] / hf["forward_s"]
                out["ratio_train_step_ours_over_hf"] = ours["train_step_s"] / hf["train_step_s"]
        print("hf", json.dumps(out.get("hf_torch")), flush=True)
    out["decoding"] = run_decoding(cfg, params, enc, _DECODE_LEN.value, _REPEATS.value)
    print("decoding", json.dumps(out["decoding"]), flush=True)
    out["load_average_1m_at_end"] = os.getloadavg()[0]
    path = pathlib.Path(_OUT.value)
    write_results(path.parent, out, name=path.name)


if __name__ == "__main__":
    app.run(main)
