"""Data for distillation: the registry's image sets, normalisation and ZCA.

CIFAR-10, MNIST-5k and Fashion-MNIST come from the core registry; CIFAR-100, Tiny-ImageNet and
ImageNet-1K at 64x64 (the ``full`` config) are TFDS-only datasets registered in
:mod:`robustml_jax.distill._datasets`.

ZCA whitening follows MTT (kornia's ``ZCAWhitening(eps=0.1)``): W = U diag(1/sqrt(l + eps)) U^T
from the covariance of the normalised training images.

Shapes: N = examples, H, W, Ch = image size, D = H * W * Ch.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from robustml_jax.core import datasets

__all__ = ["Preprocessor", "fit_preprocessor", "load_split", "real_subset"]


def load_split(name: str, split: str) -> dict:
    """``{"image": uint8 [N, H, W, Ch], "label": int32 [N]}`` for a registered image dataset."""
    if name == "imagenet64" and split == "test":
        split = "validation"  # ImageNet's labelled held-out split
    d = datasets.load(name, split)
    image = np.asarray(d["image"])
    if image.ndim == 3:
        image = image[..., None]
    return {"image": image, "label": np.asarray(d["label"], np.int32)}


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Per-channel normalisation, then optional ZCA whitening.

    Attributes:
      mean, std: [Ch] of the training images scaled to [0, 1].
      zca: [D, D] whitening matrix, or None.
      zca_mean: [D] mean of the normalised training images (ZCA centres on it).
    """

    mean: np.ndarray
    std: np.ndarray
    zca: np.ndarray | None = None
    zca_mean: np.ndarray | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, Ch] -> float32 [N, H, W, Ch]."""
        x = (images.astype(np.float32) / 255.0 - self.mean) / self.std
        if self.zca is None:
            return x.astype(np.float32)
        flat = x.reshape(len(x), -1)
        out = np.empty_like(flat)
        for i in range(0, len(flat), 4096):
            out[i : i + 4096] = (flat[i : i + 4096] - self.zca_mean) @ self.zca
        return out.reshape(x.shape).astype(np.float32)


def fit_preprocessor(
    images: np.ndarray,
    *,
    zca: bool,
    zca_eps: float = 0.1,
    zca_fit_examples: int = 0,
    key: jax.Array | None = None,
) -> Preprocessor:
    """Fits the normalisation (and ZCA) on training images uint8 [N, H, W, Ch].

    Args:
      zca: whether to whiten.
      zca_eps: regulariser added to the eigenvalues (MTT: 0.1).
      zca_fit_examples: fit the covariance on this many images (0 = all), drawn with ``key``.
    """
    x = images.astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2)) + 1e-8
    pre = Preprocessor(mean=mean, std=std)
    if not zca:
        return pre
    if zca_fit_examples and zca_fit_examples < len(images):
        if key is None:
            raise ValueError("zca_fit_examples needs a PRNG key to draw the subset")
        idx = np.asarray(jax.random.permutation(key, len(images)))[:zca_fit_examples]
        x = x[np.sort(idx)]
    flat = ((x - mean) / std).reshape(len(x), -1).astype(np.float64)
    zmean = flat.mean(0)
    flat -= zmean
    cov = flat.T @ flat / max(len(flat) - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    w = (evecs / np.sqrt(np.maximum(evals, 0.0) + zca_eps)) @ evecs.T
    return Preprocessor(mean, std, w.astype(np.float32), zmean.astype(np.float32))


def real_subset(
    key: jax.Array,
    labels: np.ndarray | None,
    *,
    per_class: int,
    num_classes: int,
    class_index: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Indices of ``per_class`` random examples of each class, class-major order [K * per_class].

    Args:
      key: PRNG key; class c draws its members with ``fold_in(key, c)``.
      labels: int [N] (unused when ``class_index`` is given).
      per_class: examples per class.
      num_classes: K.
      class_index: optional precomputed members of every class in ascending order
        (:meth:`robustml_jax.distill.ImageStore.class_index`); gives the same draw as ``labels``
        without scanning them.

    Raises:
      ValueError: a class has fewer than ``per_class`` examples.
    """
    out = []
    for c in range(num_classes):
        members = class_index[c] if class_index is not None else np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than {per_class}")
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, c), len(members)))
        out.append(members[perm[:per_class]])
    return np.concatenate(out)
