"""Paper 8's pipeline: watermark the encoder, let suspects fine-tune it, extract, test.

Every expensive piece is a :class:`~robustml_jax.core.workitems.WorkItems` item, so a killed
run resumes where it stopped and the watermarked encoders are trained once:

- ``items/encoders/<variant>``: the released encoder of each watermark variant (orbax);
- ``items/runs/<task>__<encoder>__<attack>__s<seed>``: one suspect (fine-tuned model) and its
  evaluation (clean accuracy, per-trigger WESR, the WESR-over-steps curve), as JSON.

``results.json`` holds, per downstream task: clean accuracy and WESR of the clean reference
models, of every watermark variant and of every removal attempt (mean, std, per seed), the
p-values of the prediction t-test (and of the naive binomial test, for comparison), and the
false-positive rates of the test on the clean models (leave-one-out).
"""

from __future__ import annotations

import json
import pathlib
import re
import zlib
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from robustml_jax.core import datasets, plotting
from robustml_jax.core.workitems import WorkItems
from robustml_jax.models import bert
from robustml_jax.watermark import detection, training
from robustml_jax.watermark import model as wm_model
from robustml_jax.watermark import triggers as trig

_SETS = {"rare": "rare_triggers", "common": "common_triggers"}


# ----------------------------------------------------------------------------- data


def _shuffled(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def load_task(name: str, n_train: int, n_test: int) -> tuple[training.Task, training.Task]:
    """(train, test) subsets of a downstream or proxy task, deterministic."""
    if name == "mr":
        d = datasets.load("mr", "all")
        idx = _shuffled(len(d["text"]), 8)
        tr, te = idx[:n_train], idx[n_train : n_train + n_test]
        mk = lambda ix, s: training.Task(f"mr_{s}", [d["text"][i] for i in ix], d["label"][ix], 2)
        return mk(tr, "train"), mk(te, "test")
    if name == "rte":
        tr_d, te_d = datasets.load("rte", "train"), datasets.load("rte", "dev")

        def mk(d, n, s):
            ix = _shuffled(len(d["label"]), 8)[:n]
            return training.Task(
                f"rte_{s}",
                [d["premise"][i] for i in ix],
                d["label"][ix],
                2,
                second=[d["hypothesis"][i] for i in ix],
            )

        return mk(tr_d, n_train, "train"), mk(te_d, n_test, "test")
    if name.startswith("blitzer_"):
        splits = ("train", "dev")
    elif name == "sst2":
        splits = ("train_full", "dev")
    elif name == "bbc_news":
        splits = ("train", "test")
    else:
        raise ValueError(f"unknown task {name!r}")
    out = []
    for split, n in zip(splits, (n_train, n_test), strict=True):
        d = datasets.load(name, split)
        ix = _shuffled(len(d["text"]), 8)[:n]
        k = int(max(d["label"])) + 1 if name != "bbc_news" else len(d["label_names"])
        out.append(training.Task(f"{name}_{split}", [d["text"][i] for i in ix], d["label"][ix], k))
    return out[0], out[1]


def _with_trigger_words(task: training.Task, words: list[str], frac: float, seed: int):
    """The attacker's data: trigger words inserted into ``frac`` of the texts, labels kept."""
    rng = np.random.default_rng(seed)
    texts = list(task.texts)
    for i in np.flatnonzero(rng.random(len(texts)) < frac):
        texts[i] = trig.insert_trigger([texts[i]], words[rng.integers(len(words))], rng)[0]
    return training.Task(task.name + "_trigdata", texts, task.labels, task.num_classes, task.second)


# ----------------------------------------------------------------------------- model


def load_base(c: ml_collections.ConfigDict):
    """(config, clean encoder params, tokenizer) of the pre-trained (or tiny random) encoder."""
    m = bert.load_minilm(max_len=c.max_len)
    if c.model == "minilm":
        return m.config, m.params, m.tokenizer
    cfg = bert.BertConfig(
        vocab_size=m.tokenizer.vocab_size,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    params = bert.BertEncoder(cfg).init(jax.random.key(c.seed), np.zeros((1, 2), np.int32))
    return cfg, params["params"], m.tokenizer


def _json_items(directory: pathlib.Path) -> WorkItems:
    def save(folder: pathlib.Path, value: Any) -> None:
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(value))

    return WorkItems(directory, save=save, load=lambda f: json.loads((f / "run.json").read_text()))


# ----------------------------------------------------------------------------- evaluation


class _Probe:
    """The owner's probe texts for one task, clean and with each trigger inserted."""

    def __init__(self, test: training.Task, sets: dict, c, tokenizer, seed: int):
        n = min(c.probe_size, len(test.texts))
        self.test, self.sets, self.c, self.tok = test, sets, c, tokenizer
        self.second = None if test.second is None else list(test.second[:n])
        self.clean = wm_model.encode_texts(tokenizer, list(test.texts[:n]), c.max_len, self.second)
        self.trig = {}
        for s, trigs in sets.items():
            for j, t in enumerate(trigs):
                rng = np.random.default_rng([seed, j, len(s)])
                texts = trig.insert_trigger(test.texts[:n], t, rng, max_position=c.max_position)
                self.trig[(s, t)] = wm_model.encode_texts(tokenizer, texts, c.max_len, self.second)
        self.test_batch = wm_model.encode_texts(tokenizer, list(test.texts), c.max_len, test.second)

    def evaluate(self, enc, head, config, set_names, *, limit: int | None = None) -> dict:
        cut = (
            (lambda b: b) if limit is None else (lambda b: wm_model.Batch(*(a[:limit] for a in b)))
        )
        pred = lambda b: training.predict(enc, head, cut(b), config=config)
        out: dict[str, Any] = {}
        if limit is None:
            out["acc"] = float(
                np.mean(
                    training.predict(enc, head, self.test_batch, config=config)
                    == np.asarray(self.test.labels)
                )
            )
        clean = pred(self.clean)
        k = self.test.num_classes
        for s in set_names:
            per = []
            for t in self.sets[s]:
                fs = detection.flip_stats(clean, pred(self.trig[(s, t)]), k)
                per.append({"trigger": t, **fs._asdict()})
            flips = sum(p["flips"] for p in per)
            elig = sum(p["eligible"] for p in per)
            out[s] = {
                "per_trigger": per,
                "flips": flips,
                "eligible": elig,
                "wesr": flips / elig if elig else float("nan"),
            }
        return out


# ----------------------------------------------------------------------------- pipeline


def _variant(name: str) -> tuple[str, str]:
    s, mode = name.split("_", 1)
    return s, "embedding_poisoning" if mode == "embedding_poisoning" else "multitask"


def watermark_kwargs(c) -> dict:
    """:func:`training.embed_watermark`'s hyperparameters from a config (one place for the
    experiment and the ablation script)."""
    return {
        "steps": c.wm_steps,
        "lr": c.wm_lr,
        "emb_lr": c.emb_lr,
        "head_lr": c.head_lr,
        "batch_size": c.wm_batch,
        "rep_weight": c.rep_weight,
        "target_scale": c.target_scale,
        "max_len": c.max_len,
        "max_position": c.max_position,
    }


COUNTS = ("clean_seeds", "reference_seeds", "wm_seeds", "other_wm_seeds", "removal_seeds")


def task_counts(c, task: str) -> dict:
    """Seeds per model kind and the removal attempts for one downstream task: the config's
    ``clean_seeds``, ..., ``attacks`` and the watermark variants with ``c.task_overrides[task]``
    applied (fewer seeds on the tasks the CPU table can afford less of). Keys: ``COUNTS``,
    ``attacks`` and ``variants``."""
    d = {k: c[k] for k in COUNTS}
    d["attacks"], d["variants"] = tuple(c.attacks), tuple(c.wm_variants)
    over = c.get("task_overrides", None) or {}
    d.update(dict(over.get(task, None) or {}))
    d["attacks"], d["variants"] = tuple(d["attacks"]), tuple(d["variants"])
    return d


def _variant_seeds(c, counts: dict) -> dict[str, int]:
    """{variant: fine-tuning seeds} for one task (the main variant first; 0 seeds dropped)."""
    main_v = c.wm_variants[0]
    n = {v: counts["wm_seeds"] if v == main_v else counts["other_wm_seeds"] for v in c.wm_variants}
    return {v: k for v, k in n.items() if k > 0 and v in counts["variants"]}


def train_and_evaluate(c: ml_collections.ConfigDict, workdir, runtime=None) -> dict:
    del runtime
    workdir = pathlib.Path(workdir)
    config, clean_enc, tok = load_base(c)
    sets = {s: tuple(c[_SETS[s]]) for s in _SETS}
    for trigs in sets.values():
        for t in trigs:
            trig.check_trigger(tok, t)
    key = jax.random.key(c.seed)
    enc_items = WorkItems(workdir / "items" / "encoders", like=clean_enc)
    runs = _json_items(workdir / "items" / "runs")

    # ---- owner: watermark the encoder once per variant (cached)
    proxy = [load_task(p, c.proxy_size, 8)[0] for p in c.proxy_tasks]
    encoders = {"clean": clean_enc}
    wm_history = {}
    for vi, v in enumerate(c.wm_variants):
        s, mode = _variant(v)

        def compute(v=v, s=s, mode=mode, vi=vi):
            logging.info("watermarking: %s", v)
            r = training.embed_watermark(
                clean_enc,
                jax.random.fold_in(key, 1000 + vi),
                proxy,
                sets[s],
                config=config,
                tokenizer=tok,
                **watermark_kwargs(c),
                mode=mode,
                progress=c.progress,
            )
            hist = workdir / "items" / f"history_{v}.json"
            hist.parent.mkdir(parents=True, exist_ok=True)
            hist.write_text(json.dumps(r.history))
            return r.encoder

        encoders[v] = enc_items.get(v, compute)
        wm_model.check_encoder_params(encoders[v], config, source=f"cached encoder {v}")
        hist = workdir / "items" / f"history_{v}.json"
        wm_history[v] = json.loads(hist.read_text()) if hist.is_file() else []

    if any(task_counts(c, t)["reference_seeds"] for t in c.tasks):
        # the unwatermarked reference: the same multi-task training (data, steps, optimiser,
        # key as the main variant) with the backdoor terms weighted 0

        def compute_ref():
            logging.info("multi-task reference without triggers")
            r = training.embed_watermark(
                clean_enc,
                jax.random.fold_in(key, 1000),
                proxy,
                sets[_variant(c.wm_variants[0])[0]],
                config=config,
                tokenizer=tok,
                **watermark_kwargs(c),
                trigger_weight=0.0,
                progress=c.progress,
            )
            return r.encoder

        encoders["reference"] = enc_items.get("reference", compute_ref)

    main_v = c.wm_variants[0]
    main_set = _variant(main_v)[0]
    # ---- the suspects: (encoder, attack, seed) per task, in priority order
    plan = []
    for task in c.tasks:  # seed by seed, so a run cut short has every model kind at low seeds
        tc = task_counts(c, task)
        counts = {"clean": tc["clean_seeds"], "reference": tc["reference_seeds"]}
        counts.update(_variant_seeds(c, tc))
        for s in range(max(counts.values())):
            plan += [(task, e, "none", s) for e, n in counts.items() if s < n]
    for task in c.tasks:
        tc = task_counts(c, task)
        plan += [(task, main_v, a, s) for a in tc["attacks"] for s in range(tc["removal_seeds"])]

    probes, data = {}, {}
    from tqdm.auto import tqdm

    if c.only_items:  # an extra worker computing a few items of a shared items folder
        plan = [p for p in plan if re.fullmatch(c.only_items, "{}__{}__{}__s{}".format(*p))]
    results_runs: dict[tuple, dict] = {}
    for ti_, (task, enc_name, attack, seed) in enumerate(
        tqdm(plan, desc="suspects", disable=not c.progress)
    ):
        del ti_
        name = f"{task}__{enc_name}__{attack}__s{seed}"
        if not runs.done(name):
            if task not in data:
                data[task] = load_task(task, c.ft_train, c.ft_test)
                probes[task] = _Probe(data[task][1], sets, c, tok, seed=17)
            train_task, _ = data[task]
            probe = probes[task]
            unmarked = enc_name in ("clean", "reference")
            eval_sets = list(sets) if unmarked else [_variant(enc_name)[0]]
            curve_sets = [main_set]
            enc = encoders[enc_name]
            k = jax.random.fold_in(
                jax.random.fold_in(key, zlib.crc32(task.encode()) % 10_000), seed
            )
            steps, lr = c.ft_steps, c.ft_lr
            if attack == "longer":
                steps = c.ft_steps * c.longer_factor
            elif attack == "high_lr":
                lr = c.high_lr
            elif attack == "reinit_top":
                enc = wm_model.reinit_top_layer(enc, jax.random.fold_in(k, 7), config)
            elif attack == "prune":
                enc = wm_model.magnitude_prune(enc, c.prune_fraction)
            elif attack == "trigger_data":
                words = [w for t in sets[_variant(enc_name)[0]] for w in trig.words_of(t)]
                train_task = _with_trigger_words(train_task, words, c.trigger_data_fraction, seed)
            with_curve = attack == "none" and seed == 0 and enc_name in ("clean", main_v)
            eval_fn = None
            if with_curve:

                def eval_fn(e, h, probe=probe, curve_sets=curve_sets):
                    r = probe.evaluate(e, h, config, curve_sets, limit=c.curve_probe)
                    return {"wesr": r[main_set]["wesr"]}

            ft = training.finetune(
                enc,
                k,
                train_task,
                config=config,
                tokenizer=tok,
                steps=steps,
                lr=lr,
                batch_size=c.ft_batch,
                max_len=c.max_len,
                eval_fn=eval_fn,
                eval_every=c.curve_every if with_curve else 0,
            )
            ev = probe.evaluate(ft.encoder, ft.head, config, eval_sets)
            runs.put(name, {"eval": ev, "curve": ft.curve, "steps": steps, "lr": lr})
            logging.info(
                "%s: acc %.3f %s", name, ev["acc"], {s: round(ev[s]["wesr"], 3) for s in eval_sets}
            )
        results_runs[(task, enc_name, attack, seed)] = runs.load(name)
    if c.only_items:
        return {"only_items": c.only_items, "items": ["{}__{}__{}__s{}".format(*k) for k in plan]}
    return summarize(c, results_runs, wm_history, workdir)


# ----------------------------------------------------------------------------- summary


def _ms(x: list[float]) -> dict:
    a = np.asarray(x, np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "per_seed": a.tolist(),
    }


def _rate(d: dict) -> float:
    """WESR pooled over triggers; 0 (no evidence) when no probe text was eligible."""
    return d["flips"] / d["eligible"] if d["eligible"] else 0.0


def summarize(c, runs: dict, wm_history: dict, workdir: pathlib.Path) -> dict:
    out: dict[str, Any] = {"tasks": {}, "watermark_history": wm_history}
    main_v = c.wm_variants[0]
    for task in c.tasks:
        tc = task_counts(c, task)
        clean = [runs[(task, "clean", "none", s)]["eval"] for s in range(tc["clean_seeds"])]
        ref = {s: [_rate(e[s]) for e in clean] for s in _SETS}
        n_ref = {s: max(1, int(np.mean([e[s]["eligible"] for e in clean]))) for s in _SETS}
        pooled = {
            s: sum(e[s]["flips"] for e in clean) / max(1, sum(e[s]["eligible"] for e in clean))
            for s in _SETS
        }
        t: dict[str, Any] = {
            "clean": {
                "acc": _ms([e["acc"] for e in clean]),
                **{f"wesr_{s}": _ms(ref[s]) for s in _SETS},
            }
        }
        # the test's false-positive rate on clean models: leave-one-out p-values
        fpr = {}
        for s in _SETS:
            ps = (
                [
                    detection.watermark_pvalue(ref[s][i], ref[s][:i] + ref[s][i + 1 :], n_ref[s])
                    for i in range(len(ref[s]))
                ]
                if len(ref[s]) >= 3
                else []
            )
            fpr[s] = {
                "loo_pvalues": ps,
                "rejected_at_0.05": int(sum(p < 0.05 for p in ps)),
                f"rejected_at_{c.alpha:g}": int(sum(p < c.alpha for p in ps)),
                "models": len(ps),
            }
        t["clean"]["false_positives"] = fpr

        def score(key_list, ref=ref, pooled=pooled, clean=clean):
            evs = [runs[k]["eval"] for k in key_list]
            s = _variant(key_list[0][1])[0]
            rates = [_rate(e[s]) for e in evs]
            pv = [
                detection.watermark_pvalue(r, ref[s], max(1, e[s]["eligible"]))
                for r, e in zip(rates, evs, strict=True)
            ]
            pb = [
                detection.binomial_pvalue(e[s]["flips"], max(1, e[s]["eligible"]), pooled[s])
                for e in evs
            ]
            return {
                "trigger_set": s,
                "acc": _ms([e["acc"] for e in evs]),
                "wesr": _ms(rates),
                "pvalue": {"max": float(max(pv)), "per_seed": pv},
                "binomial_pvalue_naive": pb,
                "acc_minus_clean": float(
                    np.mean([e["acc"] for e in evs]) - np.mean([e["acc"] for e in clean])
                ),
                "detected_at_alpha": int(sum(p < c.alpha for p in pv)),
                "seeds": len(evs),
            }

        if tc["reference_seeds"]:
            # unwatermarked multi-task reference: accuracy, and the test's false positives on it
            refm = [
                runs[(task, "reference", "none", s)]["eval"] for s in range(tc["reference_seeds"])
            ]
            t["reference"] = {"acc": _ms([e["acc"] for e in refm]), "seeds": len(refm)}
            for s in _SETS:
                rr = [_rate(e[s]) for e in refm]
                pv = [
                    detection.watermark_pvalue(r, ref[s], max(1, e[s]["eligible"]))
                    for r, e in zip(rr, refm, strict=True)
                ]
                t["reference"][f"wesr_{s}"] = _ms(rr)
                t["reference"][f"pvalues_{s}"] = pv
                t["reference"][f"rejected_{s}_at_0.05"] = int(sum(p < 0.05 for p in pv))
                t["reference"][f"rejected_{s}_at_{c.alpha:g}"] = int(sum(p < c.alpha for p in pv))
        t["variants"] = {}
        for v, n in _variant_seeds(c, tc).items():
            t["variants"][v] = score([(task, v, "none", s) for s in range(n)])
            if tc["reference_seeds"]:
                t["variants"][v]["acc_minus_reference"] = (
                    t["variants"][v]["acc"]["mean"] - t["reference"]["acc"]["mean"]
                )
        t["attacks"] = {
            a: score([(task, main_v, a, s) for s in range(tc["removal_seeds"])])
            for a in tc["attacks"]
        }
        t["curves"] = {
            "watermarked": runs[(task, main_v, "none", 0)]["curve"],
            "clean": runs[(task, "clean", "none", 0)]["curve"],
        }
        out["tasks"][task] = t
    out["plots"] = _plots(c, out, workdir)
    return out


def _plots(c, out: dict, workdir: pathlib.Path) -> list[str]:
    paths = []
    tasks = list(out["tasks"])
    fig, axes = plotting.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=True):
        cur = out["tasks"][task]["curves"]
        for lab, pts, style in (
            ("watermarked", cur["watermarked"], "o-"),
            ("clean", cur["clean"], "s--"),
        ):
            ax.plot([p["step"] for p in pts], [100 * p["wesr"] for p in pts], style, label=lab)
        ax.set_title(f"{task}: WESR during fine-tuning")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("WESR (%)")
        ax.set_ylim(-2, 102)
        ax.legend()
    rel = "plots/wesr_over_steps.png"
    plotting.save(fig, workdir / rel)
    paths.append(rel)
    fig, axes = plotting.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.6))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=True):
        t = out["tasks"][task]
        names = ["clean"] + list(t["variants"]) + [f"attack:{a}" for a in t["attacks"]]
        vals = [t["clean"][f"wesr_{_variant(c.wm_variants[0])[0]}"]]
        vals += [t["variants"][v]["wesr"] for v in t["variants"]]
        vals += [t["attacks"][a]["wesr"] for a in t["attacks"]]
        ax.bar(
            range(len(names)),
            [100 * v["mean"] for v in vals],
            yerr=[100 * v["std"] for v in vals],
            color="tab:blue",
        )
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("WESR (%)")
        ax.set_title(f"{task}: WESR after fine-tuning")
    rel = "plots/wesr_by_model.png"
    plotting.save(fig, workdir / rel)
    paths.append(rel)
    return paths
