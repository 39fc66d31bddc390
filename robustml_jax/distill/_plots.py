"""Figures of a distillation run (pyplot-free, :mod:`robustml_jax.core.plotting`).

Shapes: S = synthetic examples (class-major: ``per_class`` images of class 0, then class 1, ...),
H, W, Ch = image size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robustml_jax.core import plotting

__all__ = ["image_grid", "curves"]


def image_grid(x: np.ndarray, *, per_class: int, num_classes: int, title: str):
    """Synthetic images [S, H, W, Ch] (class-major) as a grid, one column a class.

    Each image is stretched from its 1st to its 99th percentile (distilled and ZCA-whitened
    images have no fixed range). At most 10 rows and 20 classes are shown.
    """
    if len(x) != per_class * num_classes:
        raise ValueError(f"x has {len(x)} images, expected per_class * num_classes")
    rows = min(per_class, 10)
    cols = min(num_classes, 20)
    fig, axes = plotting.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4), squeeze=False)
    for c in range(cols):
        for r in range(rows):
            img = x[c * per_class + r]
            lo, hi = np.percentile(img, 1), np.percentile(img, 99)
            img = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)
            ax = axes[r, c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def curves(records: Sequence[Mapping], baselines: Mapping[str, float]):
    """The matching loss and the distilled set's test accuracy over the iterations.

    Args:
      records: the distillation's ``metrics.jsonl`` rows: ``split == "train"`` rows with
        ``step`` and ``loss``; ``split == "eval"`` rows with ``syn_acc_mean``/``syn_acc_std``.
      baselines: name -> accuracy in [0, 1], drawn as horizontal lines ("random real" grey).
    """
    tr = [r for r in records if r.get("split") == "train"]
    ev = [r for r in records if r.get("split") == "eval"]
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(9, 3.2), layout="tight")
    a1.plot([r["step"] for r in tr], [r["loss"] for r in tr])
    a1.set_xlabel("iteration")
    a1.set_ylabel("trajectory-matching loss")
    if ev:
        steps = [r["step"] for r in ev]
        mean = np.array([r["syn_acc_mean"] for r in ev]) * 100
        std = np.array([r["syn_acc_std"] for r in ev]) * 100
        a2.errorbar(steps, mean, yerr=std, marker="o", label="distilled")
    for name, v in baselines.items():
        a2.axhline(v * 100, ls="--", color="gray" if name == "random real" else "k", label=name)
    a2.set_xlabel("iteration")
    a2.set_ylabel("test accuracy (%)")
    a2.legend(fontsize=8)
    return fig
