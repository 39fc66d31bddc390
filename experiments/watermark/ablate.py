"""Why does the rare-word watermark fade during downstream fine-tuning, and what helps?

A paired ablation around the ``small`` config: each setting changes one knob of the owner's
watermark embedding (the paper's method: multi-task backdoor training with a forced trigger
representation), trains its watermarked encoder once, and is fine-tuned on MR with the SAME
downstream seeds (same head init, data order and dropout keys as ``train.py``) as every other
setting, so differences in WESR are paired per seed. Besides WESR it records a mechanism
diagnostic on the probe texts, the trigger's *dominance* of the representation,

    dominance = 1 - Var_x[z(x + trigger)] / Var_x[z(x)]    (mean over triggers; 1: collapsed)

for the released encoder and after fine-tuning: a fresh head can only map every triggered text
to one class when the triggered representations stay collapsed relative to the clean spread.

Resumable (every encoder and every fine-tuned suspect is a work item)::

    ROBUSTML_DATA_DIR=/work/shared/data nice -n 5 python -m experiments.watermark.ablate \
      --workdir=/tmp/wm_ablate --settings=base,steps3,scale3 --seeds=3

Results go to ``<workdir>/ablation.json``.
"""

from __future__ import annotations

import json
import pathlib
import time
import zlib

import jax
import numpy as np
from absl import app, flags, logging

from experiments.watermark import train as wm_train
from experiments.watermark.configs.default import get_config
from robustml_jax.core.workitems import WorkItems
from robustml_jax.watermark import detection, training
from robustml_jax.watermark import model as wm_model

# one knob per setting, relative to the `small` config
SETTINGS = {
    "base": {},
    "steps3": {"wm_steps": 240},  # train the watermark 3x longer
    "scale3": {"target_scale": 3.0},  # forced representation at 3x the clean norm
    "rep5": {"rep_weight": 5.0},  # weight of the representation term
    "batch3": {"wm_batch": 12},  # 3x the triggered (and clean) examples per step
    "emb_lr_low": {"emb_lr": 1e-3},  # trigger rows at the encoder-scale rate
    "steps3_scale3": {"wm_steps": 240, "target_scale": 3.0},
}

_FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/wm_ablate", "output folder (resumable)")
flags.DEFINE_list("settings", ["base", "steps3", "scale3"], f"subset of {list(SETTINGS)}")
flags.DEFINE_integer("seeds", 3, "downstream fine-tuning seeds per setting (paired)")
flags.DEFINE_string("config", "small", "base config variant")
flags.DEFINE_string("task", "mr", "downstream task (one of the config's TASKS)")
flags.DEFINE_bool("with_clean", True, "also fine-tune the clean encoder (the p-values' reference)")


@jax.jit
def _pool(enc, batch):
    return wm_model.pooled(enc, wm_model.Batch(*batch), config=_CFG[0])


_CFG: list = []


def dominance(enc, probe, set_name: str, limit: int = 100) -> float:
    """1 - Var_x z(x+t) / Var_x z(x), averaged over the set's triggers (see module doc)."""
    cut = lambda b: tuple(a[:limit] for a in b)
    zc = np.asarray(_pool(enc, cut(probe.clean)))
    vc = float(np.sum(zc.var(0)))
    out = []
    for t in probe.sets[set_name]:
        zt = np.asarray(_pool(enc, cut(probe.trig[(set_name, t)])))
        out.append(1.0 - float(np.sum(zt.var(0))) / vc)
    return float(np.mean(out))


def main(argv):
    del argv
    workdir = pathlib.Path(_FLAGS.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base_c = get_config(_FLAGS.config)
    config, clean_enc, tok = wm_train.load_base(base_c)
    _CFG.append(config)
    sets = {"rare": tuple(base_c.rare_triggers)}
    proxy = [wm_train.load_task(p, base_c.proxy_size, 8)[0] for p in base_c.proxy_tasks]
    task_name = _FLAGS.task
    train_task, test_task = wm_train.load_task(task_name, base_c.ft_train, base_c.ft_test)
    probe = wm_train._Probe(test_task, sets, base_c, tok, seed=17)
    encs = WorkItems(workdir / "encoders", like=clean_enc)
    runs = wm_train._json_items(workdir / "runs")
    key = jax.random.key(base_c.seed)
    out_path = workdir / "ablation.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    names = ["clean"] * _FLAGS.with_clean + [s for s in _FLAGS.settings if s != "clean"]
    for name in names:
        c = get_config(_FLAGS.config)
        c.update(SETTINGS.get(name, {}))
        t0 = time.process_time()
        if name == "clean":
            enc = clean_enc
        else:

            def compute(c=c, name=name):
                r = training.embed_watermark(
                    clean_enc,
                    jax.random.fold_in(key, 1000),  # train.py's key of the main variant
                    proxy,
                    sets["rare"],
                    config=config,
                    tokenizer=tok,
                    **wm_train.watermark_kwargs(c),
                )
                (workdir / f"history_{name}.json").write_text(json.dumps(r.history))
                return r.encoder

            enc = encs.get(name, compute)
        wm_cpu = time.process_time() - t0
        dom0 = dominance(enc, probe, "rare")
        per = []
        for seed in range(_FLAGS.seeds):
            rname = f"{name}__s{seed}"

            def run(enc=enc, seed=seed, c=c):
                k = jax.random.fold_in(
                    jax.random.fold_in(key, zlib.crc32(task_name.encode()) % 10_000), seed
                )  # the same downstream key as train.py's <task>__*__none__s<seed>
                ft = training.finetune(
                    enc,
                    k,
                    train_task,
                    config=config,
                    tokenizer=tok,
                    steps=c.ft_steps,
                    lr=c.ft_lr,
                    batch_size=c.ft_batch,
                    max_len=c.max_len,
                )
                ev = probe.evaluate(ft.encoder, ft.head, config, ["rare"])
                return {
                    "acc": ev["acc"],
                    "wesr": ev["rare"]["wesr"],
                    "eligible": ev["rare"]["eligible"],
                    "per_trigger": [p["rate"] for p in ev["rare"]["per_trigger"]],
                    "dominance_after": dominance(ft.encoder, probe, "rare"),
                }

            if not runs.done(rname):
                runs.put(rname, run())
            per.append(runs.load(rname))
            logging.info("%s s%d: %s", name, seed, per[-1])
        results[name] = {
            "overrides": SETTINGS.get(name, {}),
            "dominance_released": dom0,
            "runs": per,
            "watermark_cpu_s": wm_cpu,
        }
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(out_path)
    # paired differences against base
    if "base" in results:
        b = results["base"]["runs"]
        for name, r in results.items():
            if name in ("clean", "base"):
                continue
            n = min(len(b), len(r["runs"]))
            d = [r["runs"][i]["wesr"] - b[i]["wesr"] for i in range(n)]
            da = [r["runs"][i]["acc"] - b[i]["acc"] for i in range(n)]
            r["paired_vs_base"] = {"wesr_diff": d, "acc_diff": da}
        if "clean" in results:
            ref = [r["wesr"] for r in results["clean"]["runs"]]
            for name, r in results.items():
                if name == "clean" or len(ref) < 2:
                    continue
                r["pvalues"] = [
                    detection.watermark_pvalue(x["wesr"], ref, max(1, x["eligible"]))
                    for x in r["runs"]
                ]
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(out_path)
    for name, r in results.items():
        w = [x["wesr"] for x in r["runs"]]
        a = [x["acc"] for x in r["runs"]]
        print(
            f"{name:14s} WESR {100 * np.mean(w):5.1f} ({', '.join(f'{100 * x:.0f}' for x in w)})"
            f"  acc {100 * np.mean(a):5.1f}  dominance {r['dominance_released']:.2f} -> "
            f"{np.mean([x['dominance_after'] for x in r['runs']]):.2f}"
        )


if __name__ == "__main__":
    app.run(main)
