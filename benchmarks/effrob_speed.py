"""effrob speed: vmapped zoo training and batched evaluation vs one model at a time; bootstrap.

Speed only, on random inputs of the zoo's shapes (N training rows, D hashed features, M models):

1. one full-batch training step of M logistic-regression models vmapped in one ``jit`` (the
   step ``effrob.train_zoo_models`` scans: ``effrob.model_loss`` + Adam) vs M separately jitted
   single-model steps;
2. ``core.metrics.stacked_correct`` over M models vs a loop of M jitted single-model
   predictions;
3. bootstrap replicates per second (``bootstrap_from_correct``, K = 2 ID sets).

    python -m benchmarks.effrob_speed                      # M=60, N=2712, D=4096
    python -m benchmarks.effrob_speed --models=120 --features=8192

Writes ``benchmarks/results/effrob_speed.json``.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from robustml_jax import effrob
from robustml_jax.core import metrics
from robustml_jax.core.results import write_results

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_MODELS = flags.DEFINE_integer("models", 60, "M, zoo models.")
_ROWS = flags.DEFINE_integer("rows", 2712, "N, training rows.")
_FEATURES = flags.DEFINE_integer("features", 4096, "D, hashed features.")
_TEST = flags.DEFINE_integer("test", 6000, "Test examples for the evaluation timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (after one compile run).")


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / repeats


def main(argv) -> None:
    del argv
    m, n, d, repeats = _MODELS.value, _ROWS.value, _FEATURES.value, _REPEATS.value
    key = jax.random.key(0)
    k_x, k_y, k_w, k_p, k_t = jax.random.split(key, 5)
    x = jax.random.normal(k_x, (n, d)) / np.sqrt(d)
    y = jax.random.bernoulli(k_y, 0.5, (n,)).astype(jnp.int32)
    w = jax.random.bernoulli(k_w, 0.5, (m, n)).astype(jnp.float32)
    model = effrob.BowClassifier()
    params = jax.vmap(lambda k: model.init(k, x[:1])["params"])(jax.random.split(k_p, m))
    masks = jnp.ones((m, d))
    l2s = jnp.full((m,), 1e-4)
    tx = optax.adam(0.1)

    def step(p, o, mask, l2, wi):
        g = jax.grad(effrob.model_loss)(p, x, y, hidden=0, mask=mask, l2=l2, weights=wi)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o

    stacked_step = jax.jit(jax.vmap(step))
    opt = jax.vmap(tx.init)(params)
    t_stacked = _time(lambda: stacked_step(params, opt, masks, l2s, w), repeats)

    single_step = jax.jit(step)
    singles = [jax.tree.map(lambda a, i=i: a[i], params) for i in range(m)]
    opts = [tx.init(s) for s in singles]
    t_loop = _time(
        lambda: [single_step(singles[i], opts[i], masks[i], l2s[i], w[i]) for i in range(m)],
        repeats,
    )

    xt = np.asarray(jax.random.normal(k_t, (_TEST.value, d)) / np.sqrt(d))
    yt = np.arange(_TEST.value) % 2
    apply = lambda p, xb: model.apply({"params": p}, xb)
    t_eval = _time(
        lambda: metrics.stacked_correct(params, {"t": (xt, yt)}, apply_fn=apply), repeats
    )
    pred_one = jax.jit(lambda p, xb: model.apply({"params": p}, xb) > 0)
    t_eval_loop = _time(lambda: [np.asarray(pred_one(q, xt)) for q in singles], repeats)

    rng = np.random.default_rng(0)
    sets = [rng.random((m, s)) < 0.7 for s in (600, 600, 2000)]
    nb = 1000
    t_boot = _time(
        lambda: effrob.bootstrap_from_correct(key, sets[:2], sets[2], num_samples=nb).r2, 1
    )
    out = {
        "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
        "models": m,
        "rows": n,
        "features": d,
        "train_step_stacked_s": t_stacked,
        "train_step_loop_s": t_loop,
        "train_speedup": t_loop / t_stacked,
        "eval_batched_s": t_eval,
        "eval_loop_s": t_eval_loop,
        "eval_speedup": t_eval_loop / t_eval,
        "bootstrap_replicates_per_s": nb / t_boot,
    }
    print(out)
    write_results(RESULTS, out, name="effrob_speed.json")


if __name__ == "__main__":
    app.run(main)
