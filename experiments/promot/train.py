"""The ProMoT experiment: every method fine-tuned on RTE, evaluated on RTE dev and on held-out
in-context tasks (without the prompt) before and after fine-tuning, over seeds.

Each (method, seed) run is a resumable work item (JSON); inside a run every stage trains with
:func:`core.train.fit` (orbax checkpoints) and keeps its best parameters on disk, so a killed
experiment resumes without losing finished work.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
import numpy as np

from robustml_jax import promot
from robustml_jax.core import datasets, paths, plotting
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.workitems import WorkItems
from robustml_jax.models import t5
from robustml_jax.text import SentencePieceTokenizer

SST2_WORDS = ("terrible", "great")  # the second fine-tuning task of the multi-task variants


def _json_items(directory: pathlib.Path) -> WorkItems:
    def save(folder, value):
        folder.mkdir(parents=True)
        (folder / "item.json").write_text(json.dumps(value))

    return WorkItems(directory, save=save, load=lambda f: json.loads((f / "item.json").read_text()))


def _resolve(path: str) -> pathlib.Path:
    """An absolute path as given; a relative one inside the data dir. When that is missing and
    its first folder is a registered dataset (``t5x_tiny_checkpoint``), raises the dataset's
    ``DatasetNotFoundError`` with how to get it."""
    p = pathlib.Path(path).expanduser()
    if p.is_absolute():
        return p
    full = paths.data_dir() / p
    if not full.exists() and p.parts and p.parts[0] in datasets.list_datasets():
        datasets.locate(p.parts[0])
    return full


def load_model(c: ml_collections.ConfigDict, *, progress: bool = False):
    """``(tokenizer, t5 config, params, description)`` for the config's model source."""
    if c.model_source == "t5x":
        ckpt, vocab = _resolve(c.checkpoint), _resolve(c.vocab)
        if not ckpt.exists():
            raise FileNotFoundError(f"no t5x checkpoint at {ckpt} (config.checkpoint)")
        if not vocab.exists():
            raise FileNotFoundError(f"no SentencePiece model at {vocab} (config.vocab)")
        tok = SentencePieceTokenizer(vocab)
        cfg = t5.T5Config.preset(c.preset, dropout_rate=float(c.dropout))
        params = t5.load_t5x_checkpoint(ckpt)
        try:
            t5.check_params(params, cfg)
        except ValueError as e:
            raise ValueError(f"checkpoint {ckpt} does not fit preset {c.preset}: {e}") from None
        return tok, cfg, params, f"t5x checkpoint {ckpt.name} ({c.preset})"
    tok = promot.small_tokenizer()
    cfg = promot.small_t5_config(dropout_rate=float(c.dropout))
    pdir = (
        pathlib.Path(c.pretrain_dir)
        if c.pretrain_dir
        else paths.cache_dir() / "promot" / promot.PRETRAIN_CACHE_NAME
    )
    ckpt = promot.pretrained_checkpoint(pdir)
    if ckpt is None:
        sampler = promot.EpisodeSampler(tok, max_input_len=c.max_input_len)
        ckpt = promot.pretrain(
            pdir,
            sampler,
            config=promot.small_t5_config(),
            num_steps=int(c.pretrain_steps_if_missing),
            progress=progress,
        )
    params = t5.load_t5x_checkpoint(ckpt)
    t5.check_params(params, cfg)
    return tok, cfg, params, f"small T5 pre-trained from scratch ({ckpt.name})"


def _rte_texts(d: dict, idx, demo: str | None = None):
    texts, words = [], []
    for i in idx:
        fields = {"premise": d["premise"][i], "hypothesis": d["hypothesis"][i]}
        q = promot.format_example("rte", fields)
        texts.append(q if demo is None else f"{demo}\n{q}")
        words.append(promot.RTE_LABEL_WORDS[int(d["label"][i])])
    return texts, words


def _arrays(tok, texts, words, budget, max_target_len, task: int = 0) -> dict:
    inputs = promot.encode_texts(tok, texts, budget, truncate="left")
    targets = promot.encode_texts(tok, words, max_target_len, truncate="left")
    return {"inputs": inputs, "targets": targets, "task": np.full(len(texts), task, np.int32)}


def build_data(c, tok):
    """Training arrays (RTE, RTE with a 1-shot example, RTE+SST-2 mixture) and dev texts."""
    train, dev = promot.load_rte("train"), promot.load_rte("dev")
    n_tr = int(c.num_train) or len(train["label"])
    n_dev = int(c.num_dev) or len(dev["label"])
    tr_idx = np.random.default_rng(c.seed).permutation(len(train["label"]))[:n_tr]
    dev_idx = np.arange(n_dev)
    budget = promot.check_budget(int(c.prompt_length), int(c.max_input_len))
    # ProMoT+1-shot: the shortest RTE training example, prepended to every input.
    lens = [len(p) + len(h) for p, h in zip(train["premise"], train["hypothesis"], strict=True)]
    j = int(np.argmin(lens))
    demo = (
        promot.format_example(
            "rte", {"premise": train["premise"][j], "hypothesis": train["hypothesis"][j]}
        )
        + f" {promot.RTE_LABEL_WORDS[int(train['label'][j])]}"
    )
    rte = _arrays(tok, *_rte_texts(train, tr_idx), budget, c.max_target_len)
    rte1 = _arrays(tok, *_rte_texts(train, tr_idx, demo), budget, c.max_target_len)
    data = {"rte": rte, "rte_1shot": rte1}
    if any(m.startswith("multitask") for m in c.methods):
        # The multi-task variants' second task: SST-2 with the words terrible / great.
        s_texts, s_labels = promot.load_sentiment("sst2", "train")
        s_idx = np.random.default_rng(c.seed + 1).permutation(len(s_texts))[:n_tr]
        sst = _arrays(
            tok,
            [promot.format_example("classify", {"text": s_texts[i]}) for i in s_idx],
            [SST2_WORDS[int(s_labels[i])] for i in s_idx],
            budget,
            c.max_target_len,
            task=1,
        )
        data["mixture"] = {k: np.concatenate([rte[k], sst[k]]) for k in rte}
    dev_texts = _rte_texts(dev, dev_idx)
    dev_1shot = _rte_texts(dev, dev_idx, demo)
    grad_batch = {k: rte[k][: int(c.grad_batch)] for k in ("inputs", "targets")}
    return data, dev_texts, dev_1shot, grad_batch


def _final_eval(ev, method: str, params: dict) -> dict:
    prompt = params.get("prompt")
    if prompt is not None and prompt.ndim == 3:
        prompt = prompt[0]
    # Inference: the prompt for the fine-tuned task only (none for plain fine-tuning).
    out = {"rte_accuracy": ev.rte_accuracy(params["model"], prompt, method == "promot_1shot")}
    out.update(ev.heldout_metrics(params["model"]))
    return out


def _mean_std(xs) -> dict:
    a = np.asarray(xs, float)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "values": a.tolist(),
    }


def _plots(workdir: pathlib.Path, runs: dict, pre: dict) -> list[str]:
    fig, axes = plotting.subplots(1, 3, figsize=(15, 4))
    colours = plotting.colormap("tab10")
    for i, (method, seeds) in enumerate(sorted(runs.items())):
        h = [x for x in seeds[0]["history"] if x.get("stage") == 2 and "label_share" in x]
        if not h:
            continue
        steps = [x["step"] for x in h]
        axes[0].plot(steps, [x["label_share"] for x in h], "o-", color=colours(i), label=method)
        axes[1].plot(steps, [x["norm_avg"] for x in h], "o-", color=colours(i), label=method)
        if method == "finetune":
            for g in ("mlp", "query", "key", "value"):
                if f"cos_{g}" in h[0]:
                    axes[2].plot(steps, [x[f"cos_{g}"] for x in h], "o-", label=g)
    axes[0].set(
        xlabel="model-tuning step",
        ylabel="share of held-out outputs = True/False",
        title="label-word leakage (seed 0)",
    )
    axes[1].axhline(pre["norm_avg"], color="k", ls="--", label="pre-trained")
    axes[1].set(
        xlabel="model-tuning step",
        ylabel="normalised average (%)",
        title="held-out in-context score (seed 0)",
    )
    axes[2].set(
        xlabel="fine-tuning step",
        ylabel="cosine(full grad, format grad)",
        title="vanilla fine-tuning, per group (seed 0)",
    )
    for ax in axes:
        ax.legend(fontsize=7)
    name = "specialisation.png"
    plotting.save(fig, workdir / name)
    return [name]


def _enable_compilation_cache(setting: str) -> None:
    """Every stage builds a new jitted step; identical programs (same method on another seed,
    ProMoT+1-shot vs ProMoT) then load from JAX's persistent cache instead of recompiling.
    ``setting``: '' = off, 'auto' = <cache dir>/jax_promot, else a folder. Process-global, so
    only experiment runs turn it on (never the smoke config that tests run in-process)."""
    if not setting or jax.config.jax_compilation_cache_dir is not None:
        return
    folder = paths.cache_dir() / "jax_promot" if setting == "auto" else pathlib.Path(setting)
    jax.config.update("jax_compilation_cache_dir", str(folder))


def train_and_evaluate(c: ml_collections.ConfigDict, workdir: pathlib.Path, runtime: Runtime):
    del runtime
    _enable_compilation_cache(str(c.get("compilation_cache", "")))
    workdir = pathlib.Path(workdir)
    tok, cfg, pretrained, model_desc = load_model(c, progress=c.progress)
    data, dev, dev1, grad_batch = build_data(c, tok)
    sampler = promot.EpisodeSampler(tok, max_input_len=int(c.max_input_len))
    heldout = sampler.heldout_sets(int(c.num_heldout), tuple(c.shots))
    ev = promot.Evaluator(
        tok,
        cfg,
        rte_dev=dev,
        rte_dev_1shot=dev1,
        heldout=heldout,
        grad_batch=grad_batch,
        max_input_len=int(c.max_input_len),
        prompt_length=int(c.prompt_length),
    )
    fcfg = promot.FinetuneConfig(
        prompt_length=int(c.prompt_length),
        prompt_init=c.prompt_init,
        prompt_lr=c.prompt_lr,
        model_lr=c.model_lr,
        prompt_steps=int(c.prompt_steps),
        model_steps=int(c.model_steps),
        batch_size=int(c.batch_size),
        label_smoothing=c.label_smoothing,
        eval_every=int(c.eval_every),
        max_input_len=int(c.max_input_len),
        max_target_len=int(c.max_target_len),
    )
    items = _json_items(workdir / "items")
    pre = items.get(
        "pretrained",
        lambda: {
            "rte_accuracy": ev.rte_accuracy(pretrained),
            **ev.heldout_metrics(pretrained),
            **ev.grad_cosines({"model": pretrained}),
        },
    )
    runs: dict[str, list] = {}
    for method in c.methods:
        seeds = c.seeds[:1] if method in c.single_seed_methods else c.seeds
        for seed in seeds:

            def one(method=method, seed=seed):
                out = promot.run_method(
                    method,
                    workdir / "runs" / f"{method}_s{seed}",
                    pretrained,
                    config=cfg,
                    cfg=fcfg,
                    data=data,
                    make_eval=ev.make_eval,
                    key=jax.random.fold_in(jax.random.key(c.seed), seed),
                )
                return {"final": _final_eval(ev, method, out["params"]), "history": out["history"]}

            runs.setdefault(method, []).append(items.get(f"{method}_s{seed}", one))
    summary = {}
    tasks = [s.name for s in heldout]
    for method, rs in runs.items():
        summary[method] = {
            k: _mean_std([r["final"][k] for r in rs])
            for k in ["rte_accuracy", "norm_avg", "label_share", *tasks]
        }
    # Paired (per seed) differences of ProMoT against vanilla fine-tuning.
    paired = {}
    if "finetune" in runs:
        for method in runs:
            if method == "finetune":
                continue
            if len(runs[method]) != len(runs["finetune"]):
                continue  # single-seed methods: no paired spread
            paired[method] = {
                k: _mean_std(
                    [
                        a["final"][k] - b["final"][k]
                        for a, b in zip(runs[method], runs["finetune"], strict=True)
                    ]
                )
                for k in ("rte_accuracy", "norm_avg", "label_share", *tasks)
            }
    plots = _plots(workdir, runs, pre)
    ft_hist = [
        x for x in runs.get("finetune", [{"history": []}])[0]["history"] if "label_share" in x
    ]
    return {
        "model": model_desc,
        "pretrained": pre,
        "methods": summary,
        "paired_vs_finetune": paired,
        "finetune_curve_seed0": ft_hist,
        "heldout_tasks": tasks,
        "runs": {m: [r["final"] for r in rs] for m, rs in runs.items()},
        "plots": plots,
    }
