"""ProMoT speed: a prompt-tuning step (stage 1) vs a full model-tuning step (stage 2, and
vanilla fine-tuning), time and memory; compile time reported separately.

Every step is the pipeline's: :func:`core.train.make_train_step` over
``{'model', 'prompt'}`` with :func:`core.train.freeze` masks and Adafactor (prompt: no
parameter scaling; model: t5x's). Memory is XLA's compiled-program analysis (arguments +
outputs + temporaries) plus the optimizer state's bytes; steady-state time is the median over
``--iters`` steps after one warm-up. On a shared CPU the wall times are distorted by the load;
the ratio of the two steps in the same run is what to read.

    python -m benchmarks.promot_speed                       # the small config's model
    python -m benchmarks.promot_speed --emb=512 --layers=8  # T5.1.1-small-like

Writes ``benchmarks/results/promot_speed.json``.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time

import jax
import numpy as np
import optax
from absl import app, flags

from robustml_jax import promot
from robustml_jax.core import train
from robustml_jax.core.results import atomic_write_text

_EMB = flags.DEFINE_integer("emb", 128, "Model width.")
_LAYERS = flags.DEFINE_integer("layers", 2, "Encoder = decoder layers.")
_VOCAB = flags.DEFINE_integer("vocab", 4096, "Vocabulary size.")
_BATCH = flags.DEFINE_integer("batch", 16, "Batch size.")
_LEN = flags.DEFINE_integer("len", 128, "Encoder budget (prompt included).")
_PROMPT = flags.DEFINE_integer("prompt", 20, "Prompt length P.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed steps.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/promot_speed.json", "Output JSON.")


def _bytes(tree) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def measure(name, params, trainable, lr, scale, batch, cfg, iters):
    tx = train.freeze(
        optax.adafactor(lr, decay_rate=0.8, multiply_by_parameter_scale=scale), trainable
    )
    loss = functools.partial(promot.task_loss, config=cfg, label_smoothing=0.1, dropout=True)
    state = train.create_train_state(params, tx)
    step = jax.jit(train.make_train_step(loss, tx))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    state, m = compiled(state, batch, key)
    jax.block_until_ready(m)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        state, m = compiled(state, batch, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    total = None
    if mem is not None:
        total = int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)
    return {
        "method": name,
        "compile_s": compile_s,
        "step_s_median": float(np.median(times)),
        "step_s_max": float(np.max(times)),
        "xla_bytes": total,
        "xla_temp_bytes": None if mem is None else int(mem.temp_size_in_bytes),
        "optimizer_state_bytes": _bytes(state.opt_state),
    }


def main(argv):
    del argv
    cfg = promot.small_t5_config(
        vocab_size=_VOCAB.value,
        emb_dim=_EMB.value,
        num_layers=_LAYERS.value,
        mlp_dim=3 * _EMB.value,
        dropout_rate=0.1,
    )
    from robustml_jax.models import t5

    model = t5.init_params(jax.random.key(0), cfg)
    prompt = promot.init_prompt(
        jax.random.key(1), _PROMPT.value, model["token_embedder"]["embedding"]
    )
    rng = np.random.default_rng(0)
    text_len = promot.check_budget(_PROMPT.value, _LEN.value)
    b = _BATCH.value
    with_p = {
        "inputs": rng.integers(3, _VOCAB.value - 100, (b, text_len)).astype(np.int32),
        "targets": np.tile(np.array([[7, 1, 0, 0]], np.int32), (b, 1)),
        "task": np.zeros(b, np.int32),
    }
    plain = {
        **with_p,
        "inputs": rng.integers(3, _VOCAB.value - 100, (b, _LEN.value)).astype(np.int32),
    }
    both = {"model": model, "prompt": prompt}
    rows = [
        measure(
            "prompt_tuning (stage 1)",
            both,
            promot.prompt_trainable,
            0.2,
            False,
            with_p,
            cfg,
            _ITERS.value,
        ),
        measure(
            "promot model tuning (stage 2)",
            both,
            promot.model_trainable,
            1e-3,
            True,
            with_p,
            cfg,
            _ITERS.value,
        ),
        measure(
            "vanilla fine-tuning",
            {"model": model},
            promot.model_trainable,
            1e-3,
            True,
            plain,
            cfg,
            _ITERS.value,
        ),
    ]
    base = rows[2]
    for r in rows:
        r["time_vs_finetune"] = r["step_s_median"] / base["step_s_median"]
        if r["xla_bytes"] and base["xla_bytes"]:
            r["memory_vs_finetune"] = r["xla_bytes"] / base["xla_bytes"]
    out = {
        "device": str(jax.devices()[0]),
        "model": {
            "emb": _EMB.value,
            "layers": _LAYERS.value,
            "vocab": _VOCAB.value,
            "params": _bytes(model) // 4,
        },
        "batch": b,
        "encoder_len": _LEN.value,
        "prompt_len": _PROMPT.value,
        "rows": rows,
        "note": "wall times on a shared CPU are distorted by the load; read the ratios",
    }
    path = pathlib.Path(_OUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    app.run(main)
