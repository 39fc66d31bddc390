"""The experiment's data: LipMIP-style synthetic clusters, image subsets and a tabular regression.

Shapes: N = rows, N_0 = input size, F = tabular features.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from robustml_jax.core import datasets

__all__ = ["Tabular", "diabetes_data", "image_data", "synthetic_data"]


def synthetic_data(key: jax.Array, *, dim: int, num_classes: int, clusters: int, n: int) -> dict:
    """LipMIP-style clustered data: cluster centres in [0, 1]^dim, each with a random class.

    The same key with a larger ``n`` gives the same clusters (and labels), so the rows past
    a training set's ``n`` serve as unseen test points.

    Returns:
      ``{"image": float32 [n, dim], "label": int32 [n]}``.
    """
    k_c, k_l, k_a, k_x = jax.random.split(key, 4)
    centres = jax.random.uniform(k_c, (clusters, dim))
    labels = jax.random.randint(k_l, (clusters,), 0, num_classes)
    assign = jax.random.randint(k_a, (n,), 0, clusters)
    x = centres[assign] + 0.05 * jax.random.normal(k_x, (n, dim))
    return {"image": np.asarray(x, np.float32), "label": np.asarray(labels[assign], np.int32)}


def image_data(name: str, split: str, *, limit: int, flat: bool = False) -> dict:
    """The first ``limit`` images of a registered dataset, scaled to [0, 1].

    Raises :class:`robustml_jax.core.datasets.DatasetNotFoundError` (with how to get it) when
    the dataset is absent.

    Returns:
      ``{"image": float32 [n, H, W, C] (or [n, N_0] when flat), "label": int32 [n]}``.
    """
    d = datasets.load(name, split)
    image = d["image"][:limit].astype(np.float32) / 255.0
    if flat:
        image = image.reshape(image.shape[0], -1)
    return {"image": image, "label": d["label"][:limit].astype(np.int32)}


class Tabular(NamedTuple):
    """A standardised regression set split into train and test rows.

    Attributes:
      train: ``{"image": float32 [N_train, F], "label": float32 [N_train]}`` (the train loop's
        batch keys).
      test_x: float32 [N_test, F].
      test_y: float64 [N_test].
      features: the F feature names.
    """

    train: dict
    test_x: np.ndarray
    test_y: np.ndarray
    features: list[str]


def diabetes_data(key: jax.Array, *, train_frac: float = 0.8) -> Tabular:
    """sklearn's diabetes regression data (442 rows, 10 features), standardised, split at random.

    Used for the monotonicity certificates in place of the paper's UCI Adult (not available
    offline): the data is real, tabular and ships with scikit-learn.
    """
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    y = (d.target - d.target.mean()) / d.target.std()
    perm = np.asarray(jax.random.permutation(key, len(y)))
    n_train = int(train_frac * len(y))
    train = {
        "image": x[perm[:n_train]].astype(np.float32),
        "label": y[perm[:n_train]].astype(np.float32),
    }
    return Tabular(
        train, x[perm[n_train:]].astype(np.float32), y[perm[n_train:]], list(d.feature_names)
    )
