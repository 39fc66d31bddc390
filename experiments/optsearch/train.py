"""Orchestration of the ENOS experiment: ``train_and_evaluate(config, workdir, runtime)``.

1. Search: MCTS and random search, ``num_search_runs`` search seeds each, same budget, same
   candidate evaluation (lr grid x training seeds in one interpreted, jitted call). Every
   evaluation is a work item keyed by the rule, so a killed run resumes (the searches replay
   deterministically against the saved scores) and both methods share identical results.
2. Evaluation protocol: the best distinct MCTS rules (and random search's best) against Adam,
   SGD with momentum, RMSProp, AddSign and PowSign, every optimizer tuned on the same lr grid,
   mean training loss over steps; intervals over training seeds; paired differences to Adam.
3. Transfer: the best rule and the baselines on the MNISTNet variants and other tasks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from robustml_jax import optsearch
from robustml_jax.core import datasets, metrics, plotting
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.workitems import WorkItems


def _json_items(directory: pathlib.Path) -> WorkItems:
    def save(folder, value):
        folder.mkdir(parents=True)
        (folder / "item.json").write_text(json.dumps(value))

    return WorkItems(directory, save=save, load=lambda f: json.loads((f / "item.json").read_text()))


def _rule_id(rule) -> str:
    return hashlib.sha1(str(rule).encode()).hexdigest()[:16]


def load_task_data(name: str, config) -> dict:
    """{"x", "y"} for a task: MNIST-5k train (MNISTNet), a fixed random subset of SST-2's
    training sentences (text), the first CIFAR-10 training images (conv)."""
    if name.startswith("mnistnet"):
        d = datasets.load("mnist_5k", "train")
        x = d["image"].reshape(len(d["label"]), -1).astype(np.float32) / 255.0
        return {"x": jnp.asarray(x), "y": jnp.asarray(d["label"], jnp.int32)}
    if name == "text":
        d = datasets.load("sst2", "train_full")
        n = config.text_examples or len(d["label"])
        idx = np.asarray(jax.random.permutation(jax.random.key(0), len(d["label"])))[:n]
        x = optsearch.hashed_bag_of_words([d["text"][i] for i in idx], dim=config.text_vocab)
        return {"x": jnp.asarray(x), "y": jnp.asarray(d["label"][idx], jnp.int32)}
    if name == "conv":
        d = datasets.load("cifar10", "train")
        n = config.conv_examples or len(d["label"])
        x = d["image"][:n].astype(np.float32) / 255.0
        return {"x": jnp.asarray(x), "y": jnp.asarray(d["label"][:n], jnp.int32)}
    raise ValueError(f"unknown task {name!r}; known: {', '.join(optsearch.TASKS)}")


def _task(name: str, config, data) -> optsearch.Task:
    return optsearch.get_task(
        name, input_shape=tuple(data["x"].shape[1:]), conv_width=config.conv_width
    )


def _summarise(key, losses: np.ndarray, lrs: np.ndarray, ref: np.ndarray | None = None) -> dict:
    """Tuned score from losses [L, R, S]: best lr by mean over seeds; interval over seeds."""
    score, best = optsearch.search_score(losses)
    per_seed = np.asarray(losses[best], np.float64).mean(-1)  # [R]
    out = {"mean": score, "best_lr": float(lrs[best]), "per_seed": per_seed.tolist()}
    if np.all(np.isfinite(per_seed)) and len(per_seed) > 1:
        iv = metrics.bootstrap_interval(key, jnp.mean, jnp.asarray(per_seed))
        out["ci"] = [float(iv.low), float(iv.high)]
        if ref is not None and np.all(np.isfinite(ref)):
            d = metrics.bootstrap_interval(key, jnp.mean, jnp.asarray(per_seed - ref))
            out["diff_vs_adam"] = float(d.estimate)
            out["diff_vs_adam_ci"] = [float(d.low), float(d.high)]
    return out


@functools.lru_cache(maxsize=64)
def _baseline_fn(name, task, num_seeds, num_steps, batch_size, lift):
    """The jitted trainer of one baseline (cached: a re-run in the same process reuses it)."""
    return jax.jit(
        lambda key, data, lrs: optsearch.train_losses(
            key,
            data,
            lrs,
            task=task,
            make_tx=lambda lr, k: optsearch.BASELINES[name](lr),
            num_seeds=num_seeds,
            num_steps=num_steps,
            batch_size=batch_size,
            lift=lift,
        )
    )


def _baseline_losses(name, key, data, lrs, *, task, num_seeds, num_steps, batch_size, lift):
    fn = _baseline_fn(name, task, num_seeds, num_steps, batch_size, lift)
    return np.asarray(fn(key, data, lrs))


def _plot_curves(curves: dict, budget: int, adam_search: float, path: pathlib.Path):
    fig, ax = plotting.subplots(figsize=(6, 4))
    styles = {"mcts": ("C0", "-", 3), "random": ("C1", "--", 2)}
    for name, runs in curves.items():
        color, ls, z = styles.get(name, ("C2", "-", 1))
        arr = np.full((len(runs), budget), np.nan)
        for i, c in enumerate(runs):
            arr[i, : len(c)] = c
            if len(c):
                arr[i, len(c) :] = c[-1]
        x = np.arange(1, budget + 1)
        ax.plot(
            x,
            np.nanmean(arr, 0),
            color=color,
            ls=ls,
            zorder=z,
            label=f"{name} (mean of {len(runs)})",
        )
        ax.fill_between(x, np.nanmin(arr, 0), np.nanmax(arr, 0), color=color, alpha=0.2)
    ax.axhline(adam_search, color="k", ls="--", label="tuned Adam")
    if np.isfinite(adam_search):  # the first draws' losses would squash the interesting range
        ax.set_ylim(top=1.5 * adam_search)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best search score (mean training loss)")
    ax.set_title("ENOS search on MNISTNet: best score vs evaluations (band: min-max)")
    ax.legend()
    plotting.save(fig, path)
    return fig


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    del runtime
    workdir = pathlib.Path(workdir)
    root = jax.random.key(config.seed)
    space = optsearch.get_space(config.space)
    lrs = np.geomspace(config.lr_min, config.lr_max, config.num_lrs).astype(np.float32)
    lrs_j = jnp.asarray(lrs)
    data = load_task_data(config.task, config)
    task = _task(config.task, config, data)
    items = _json_items(workdir / "evaluations")
    n_nodes = config.max_depth

    # ---- 1. search
    search_key = jax.random.fold_in(root, 1)  # one training key for every candidate (paired)
    evaluator = optsearch.make_program_evaluator(
        task,
        num_seeds=config.search_train_seeds,
        num_steps=config.search_steps,
        batch_size=config.search_batch,
        lift=config.lift,
        vocabulary=space.ops,
    )
    # compile time (+ one evaluation of ``g``): the first call; later calls reuse the program
    t0 = time.perf_counter()
    probe = optsearch.encode_rule("g", max_nodes=n_nodes, vocabulary=space.ops)
    jax.block_until_ready(evaluator(probe, search_key, data, lrs_j))
    compile_s = time.perf_counter() - t0
    new_eval_seconds: list[float] = []

    def compute(rule):
        t = time.perf_counter()
        losses = np.asarray(
            evaluator(
                optsearch.encode_rule(rule, max_nodes=n_nodes, vocabulary=space.ops),
                search_key,
                data,
                lrs_j,
            )
        )
        score, best = optsearch.search_score(losses)
        dt = time.perf_counter() - t
        new_eval_seconds.append(dt)
        return {"rule": str(rule), "score": score, "best_lr": float(lrs[best]), "seconds": dt}

    def evaluate_fn(rule):
        return items.get(_rule_id(rule), lambda: compute(rule))["score"]

    adam_search = _summarise(
        root,
        _baseline_losses(
            "adam",
            search_key,
            data,
            lrs_j,
            task=task,
            num_seeds=config.search_train_seeds,
            num_steps=config.search_steps,
            batch_size=config.search_batch,
            lift=config.lift,
        ),
        lrs,
    )
    runs: dict[str, list[optsearch.SearchResult]] = {"mcts": [], "random": []}
    t_search = time.perf_counter()
    for s in range(config.num_search_runs):
        # the same search seed for both methods (common random numbers): MCTS's first level
        # draws exactly what random search draws, so the curves part when MCTS moves down
        key = jax.random.fold_in(jax.random.fold_in(root, 2), s)
        common = dict(
            space=space,
            budget=config.budget,
            max_depth=config.max_depth,
            bound=config.bound,
            max_sampled_factor=config.max_sampled_factor,
        )
        runs["mcts"].append(
            optsearch.mcts_search(key, evaluate_fn, num_mc_samples=config.num_mc_samples, **common)
        )
        runs["random"].append(optsearch.random_search(key, evaluate_fn, **common))
        for name in runs:
            r = runs[name][-1]
            logging.info(
                "search %s seed %d: best %.4f %s (%d evals, %d rejected, %d dups)",
                name,
                s,
                r.curve[-1] if len(r.curve) else np.nan,
                r.top(1)[0].rule if r.evaluations else "-",
                len(r.evaluations),
                r.num_rejected,
                r.num_duplicates,
            )
    search_wall = time.perf_counter() - t_search
    final = {
        m: np.array([r.curve[-1] if len(r.curve) else np.inf for r in rs]) for m, rs in runs.items()
    }
    diff = final["mcts"] - final["random"]
    search_summary = {
        m: {
            "final_best": final[m].tolist(),
            "mean": float(final[m].mean()),
            "std": float(final[m].std()),
            "best_rules": [str(r.top(1)[0].rule) for r in rs if r.evaluations],
            "num_evaluations": [len(r.evaluations) for r in rs],
            "num_rejected": [r.num_rejected for r in rs],
            "num_duplicates": [r.num_duplicates for r in rs],
            "paths": [list(r.path) for r in rs],
        }
        for m, rs in runs.items()
    }
    search_summary["mcts_minus_random"] = {
        "per_seed": diff.tolist(),
        "mean": float(diff.mean()),
        "mcts_wins": int(np.sum(diff < 0)),
        "ties": int(np.sum(diff == 0)),
    }
    if len(diff) > 1 and np.all(np.isfinite(diff)):
        iv = metrics.bootstrap_interval(root, jnp.mean, jnp.asarray(diff))
        search_summary["mcts_minus_random"]["ci"] = [float(iv.low), float(iv.high)]
    curves = {m: [r.curve.tolist() for r in rs] for m, rs in runs.items()}
    fig = _plot_curves(curves, config.budget, adam_search["mean"], workdir / "search_curve.png")
    del fig

    # ---- 2. evaluation protocol: best distinct MCTS rules + random's best vs the baselines
    eval_key = jax.random.fold_in(root, 3)
    pool: dict[tuple, optsearch.Evaluation] = {}
    for r in runs["mcts"]:
        for e in r.evaluations:
            if e.status == "ok":
                pool.setdefault(optsearch.rule_fingerprint(e.rule), e)
    top = sorted(pool.values(), key=lambda e: e.score)[: config.top_n]
    best_random = min(
        (e for r in runs["random"] for e in r.evaluations if e.status == "ok"),
        key=lambda e: e.score,
        default=None,
    )
    protocol = dict(
        num_seeds=config.eval_seeds,
        num_steps=config.eval_steps,
        batch_size=config.eval_batch,
        lift=config.lift,
    )
    eval_items = _json_items(workdir / "final_evaluations")

    def baseline_eval(name, key, data, task, items, protocol):
        return np.asarray(
            items.get(
                name,
                lambda: _baseline_losses(name, key, data, lrs_j, task=task, **protocol).tolist(),
            )
        )

    def rule_eval(rule, key, data, task, items, protocol):
        ev = optsearch.make_program_evaluator(task, **protocol, vocabulary=space.ops)
        prog = optsearch.encode_rule(rule, max_nodes=n_nodes, vocabulary=space.ops)
        return np.asarray(
            items.get(
                "rule_" + _rule_id(rule), lambda: np.asarray(ev(prog, key, data, lrs_j)).tolist()
            )
        )

    base_losses = {
        b: baseline_eval(b, eval_key, data, task, eval_items, protocol) for b in config.baselines
    }
    adam_ref = None
    if "adam" in base_losses:
        _, ib = optsearch.search_score(base_losses["adam"])
        adam_ref = base_losses["adam"][ib].mean(-1)
    baselines = {b: _summarise(eval_key, v, lrs, adam_ref) for b, v in base_losses.items()}
    top_rules = []
    candidates = [("mcts", e) for e in top]
    if best_random is not None:
        candidates.append(("random", best_random))
    for origin, e in candidates:
        summ = _summarise(
            eval_key, rule_eval(e.rule, eval_key, data, task, eval_items, protocol), lrs, adam_ref
        )
        top_rules.append(
            {
                "rule": str(e.rule),
                "formula": e.rule.formula,
                "origin": origin,
                "search_score": e.score,
                **summ,
            }
        )
    mcts_rules = [t for t in top_rules if t["origin"] == "mcts"]
    best_rule = min(mcts_rules, key=lambda t: t["mean"]) if mcts_rules else None
    best_baseline = min(baselines, key=lambda b: baselines[b]["mean"])

    # ---- 3. transfer of the best rule
    transfer = {}
    if best_rule is not None:
        rule = optsearch.parse_rule(best_rule["rule"])
        tprot = dict(
            num_seeds=config.transfer_seeds,
            num_steps=config.transfer_steps,
            batch_size=config.eval_batch,
            lift=config.lift,
        )
        for tname in config.transfer_tasks:
            tdata = load_task_data(tname, config)
            ttask = _task(tname, config, tdata)
            titems = _json_items(workdir / "transfer" / tname)
            tkey = jax.random.fold_in(root, 4)
            tb = {
                b: baseline_eval(b, tkey, tdata, ttask, titems, tprot)
                for b in config.transfer_baselines
            }
            ref = None
            if "adam" in tb:
                _, ib = optsearch.search_score(tb["adam"])
                ref = tb["adam"][ib].mean(-1)
            row = {b: _summarise(tkey, v, lrs, ref) for b, v in tb.items()}
            row["best_rule"] = _summarise(
                tkey, rule_eval(rule, tkey, tdata, ttask, titems, tprot), lrs, ref
            )
            transfer[tname] = row
            logging.info(
                "transfer %s: rule %.4f adam %.4f",
                tname,
                row["best_rule"]["mean"],
                row.get("adam", {}).get("mean", np.nan),
            )

    # throughput over every distinct rule the searches evaluated (also those a resumed run
    # loaded from its work items, which recorded their own evaluation time)
    seen = {_rule_id(e.rule) for rs in runs.values() for r in rs for e in r.evaluations}
    secs = [items.load(i)["seconds"] for i in sorted(seen) if items.done(i)]
    n_new = len(new_eval_seconds)
    evals_per_min = 60.0 * len(secs) / sum(secs) if secs else float("nan")
    return {
        "task": config.task,
        "space": config.space,
        "learning_rates": lrs.tolist(),
        "search": search_summary,
        "search_curves": curves,
        "adam_search_protocol": adam_search,
        "top_rules": top_rules,
        "baselines": baselines,
        "best_rule": best_rule,
        "best_baseline": best_baseline,
        "best_rule_beats_adam": bool(
            best_rule and "adam" in baselines and best_rule["mean"] < baselines["adam"]["mean"]
        ),
        "transfer": transfer,
        "throughput": {
            "distinct_evaluations": len(secs),
            "new_evaluations_this_run": n_new,
            "evaluations_per_minute": evals_per_min,
            "models_per_evaluation": int(config.num_lrs * config.search_train_seeds),
            "compile_seconds": compile_s,
            "search_wall_seconds": search_wall,
        },
        "plots": ["search_curve.png"],
    }
