"""Ablation: ELIAS-2 on Delicious keeping the stage-1 label classifiers (``stage2_keep_wl``).

The official loader re-initialises the per-label classifiers when ELIAS-2 starts from an
ELIAS-1 checkpoint (our default too). With the short `small` schedule on Delicious that costs
quality; this refits ELIAS-2 from the saved ELIAS-1 (seed 0) of a `small` workdir with the
classifiers kept, and writes ``ablation_keep_wl.json`` into it::

    python -m experiments.elias.ablation_keep_wl reports/workdirs/elias
"""

from __future__ import annotations

import json
import pathlib
import resource
import sys
import time

import jax

from experiments.elias import train
from experiments.elias.configs.default import get_config
from robustml_jax import xmc


def main(workdir: str) -> dict:
    root = pathlib.Path(workdir).absolute()
    c = get_config("small")
    d = train.prepare("delicious", c)
    kw = train.elias_kwargs(c, "delicious")
    kw["stage2_keep_wl"] = True
    inv = xmc.inverse_propensity(d["Y_train"])
    m1 = xmc.load_elias(root / "delicious" / "elias" / "elias1_seed0")
    t = time.perf_counter()
    m2 = xmc.fit_elias(d["X_train"], d["Y_train"], jax.random.key(0), stage1=m1, **kw)
    labels, _ = xmc.predict_elias(m2, d["X_test"], c.topk)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "delicious_elias2_keep_wl_seed0": train._ranking(labels, d["Y_test"], inv),
        "fit_s": time.perf_counter() - t,
        "process_cpu_s": ru.ru_utime + ru.ru_stime,
    }
    (root / "ablation_keep_wl.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "reports/workdirs/elias")))
