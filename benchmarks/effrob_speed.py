"""effrob speed: vmapped zoo training and batched evaluation vs one model at a time; bootstrap.

Speed only, on random inputs of the zoo's shapes (N training rows, D hashed features, M models):

1. one full-batch training step of M stacked logistic-regression models (one ``jit``, the summed
   loss of ``robustml_jax.effrob._zoo``) vs M separately jitted single-model steps;
2. ``effrob.batched_correct`` over M models vs a loop of M jitted single-model predictions;
3. bootstrap replicates per second (``bootstrap_from_correct``, K = 2 ID sets).

    python -m benchmarks.effrob_speed                      # M=60, N=2712, D=4096
    python -m benchmarks.effrob_speed --models 120 --features 8192

Writes ``benchmarks/results/effrob_speed.json``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax import effrob
from robustml_jax.core.results import write_results
from robustml_jax.effrob import _zoo

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, default=60)
    p.add_argument("--rows", type=int, default=2712)
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--test", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    m, n, d = args.models, args.rows, args.features
    key = jax.random.key(0)
    k_x, k_y, k_w, k_p, k_t = jax.random.split(key, 5)
    x = jax.random.normal(k_x, (n, d)) / np.sqrt(d)
    y = jax.random.bernoulli(k_y, 0.5, (n,)).astype(jnp.int32)
    w = jax.random.bernoulli(k_w, 0.5, (n, m)).astype(jnp.float32)
    model = effrob.BowClassifier()
    params = jax.vmap(lambda k: model.init(k, x[:1])["params"])(jax.random.split(k_p, m))
    masks = jnp.ones((m, d))
    l2s = jnp.full((m,), 1e-4)
    tx = optax.adam(0.1)
    loss_fn = _zoo._make_loss(model, masks, l2s)
    batch = {"x": x, "y": y, "w": w}

    @jax.jit
    def stacked_step(params, opt):
        g = jax.grad(lambda p: loss_fn(p, batch, None)[0])(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt

    opt = tx.init(params)
    t_stacked = _time(lambda: stacked_step(params, opt), args.repeats)

    one_loss = _zoo._make_loss(model, masks[:1], l2s[:1])

    @jax.jit
    def single_step(p, o, wi):
        b = {"x": x, "y": y, "w": wi}
        g = jax.grad(lambda q: one_loss(q, b, None)[0])(p)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o

    singles = [jax.tree.map(lambda a, i=i: a[i : i + 1], params) for i in range(m)]
    opts = [tx.init(s) for s in singles]
    t_loop = _time(
        lambda: [single_step(singles[i], opts[i], w[:, i : i + 1]) for i in range(m)],
        args.repeats,
    )

    xt = np.asarray(jax.random.normal(k_t, (args.test, d)) / np.sqrt(d))
    yt = np.arange(args.test) % 2
    apply = lambda p, xb: model.apply({"params": p}, xb)
    t_eval = _time(lambda: effrob.batched_correct(apply, params, {"t": (xt, yt)}), args.repeats)
    pred_one = jax.jit(lambda p, xb: model.apply({"params": p}, xb) > 0)
    one = [jax.tree.map(lambda a, i=i: a[i], params) for i in range(m)]
    t_eval_loop = _time(lambda: [np.asarray(pred_one(q, xt)) for q in one], args.repeats)

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
    main()
