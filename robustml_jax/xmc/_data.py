"""XMC data: loaders (mulan ARFF via the registry, XC-repository text, PECOS ``.npz``), checks,
row normalisation, padded sparse query batches and a power-law synthetic generator.

Everything stays a scipy CSR matrix on the host; device code sees either padded rows
(``cols``/``vals`` of shape [M, R]) or flat non-zero lists with segment ids.

Shapes: N instances, D features, L labels, R non-zeros per padded row.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = [
    "PaddedRows",
    "bucket_size",
    "check_features",
    "check_labels",
    "l2_normalize_rows",
    "load_dataset",
    "load_pecos_npz",
    "load_xc_text",
    "pad_rows",
    "synthetic_xmc",
]


def l2_normalize_rows(X: sp.spmatrix) -> sp.csr_matrix:
    """Rows scaled to unit l2 norm (all-zero rows stay zero). Returns float32 CSR [N, D]."""
    X = sp.csr_matrix(X, dtype=np.float32)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ X, dtype=np.float32)


def check_labels(
    Y, num_labels: int | None = None, *, allow_empty: bool = False, name: str = "Y"
) -> sp.csr_matrix:
    """Validates a label matrix and returns it as a binary float32 CSR [N, L].

    Raises:
      ValueError: negative or out-of-range label indices, or (unless ``allow_empty``) rows
        without any label.
    """
    if not sp.issparse(Y):
        raise ValueError(f"{name} must be a scipy sparse matrix [N, L], got {type(Y).__name__}")
    Y = sp.csr_matrix(Y)
    if Y.nnz and (Y.indices.min() < 0):
        raise ValueError(f"{name}: negative label index {int(Y.indices.min())}")
    if num_labels is not None and Y.shape[1] != num_labels:
        hi = int(Y.indices.max()) if Y.nnz else -1
        raise ValueError(
            f"{name}: label index out of range: matrix has {Y.shape[1]} label columns "
            f"(max index used {hi}) but the model has {num_labels} labels"
        )
    Y = sp.csr_matrix((np.ones(Y.nnz, np.float32), Y.indices, Y.indptr), shape=Y.shape)
    Y.sum_duplicates()
    Y.data[:] = 1.0
    if not allow_empty:
        empty = np.flatnonzero(np.diff(Y.indptr) == 0)
        if empty.size:
            raise ValueError(
                f"{name}: {empty.size} rows have no label (first: row {int(empty[0])}); "
                "drop them before training (e.g. Y[Y.getnnz(1) > 0])"
            )
    return Y


def check_features(X, num_features: int | None = None, *, name: str = "X") -> sp.csr_matrix:
    """Validates a feature matrix and returns float32 CSR [N, D].

    Raises:
      ValueError: not sparse, non-finite values, or a feature dimension that differs from
        ``num_features`` (the model's training dimension).
    """
    if not sp.issparse(X):
        raise ValueError(f"{name} must be a scipy sparse matrix [N, D], got {type(X).__name__}")
    X = sp.csr_matrix(X, dtype=np.float32)
    if num_features is not None and X.shape[1] != num_features:
        raise ValueError(
            f"{name}: feature dimension mismatch: got {X.shape[1]} features, "
            f"the model was trained with {num_features}"
        )
    if X.nnz and not np.all(np.isfinite(X.data)):
        raise ValueError(f"{name}: non-finite feature values")
    return X


class PaddedRows(NamedTuple):
    """Rows of a CSR matrix padded to a common length R (padding: column 0, value 0).

    Attributes:
      cols: int32 [N, R]; vals: float32 [N, R].
    """

    cols: np.ndarray
    vals: np.ndarray


def bucket_size(n: int) -> int:
    """Rounds a size up so that members and levels share compiled programs: a power of two up
    to 2^18 (compilation dominates there), above that a multiple of a quarter octave (at most
    25% padding where the arithmetic dominates)."""
    n = max(int(n), 1)
    if n <= 1 << 18:
        return max(256, 1 << (n - 1).bit_length())
    step = 1 << ((n - 1).bit_length() - 3)
    return -(-n // step) * step


def pad_rows(X: sp.csr_matrix, width: int | None = None) -> PaddedRows:
    """Pads each row of ``X`` [N, D] to ``width`` (default: the longest row, at least 1)."""
    X = sp.csr_matrix(X)
    nnz = np.diff(X.indptr)
    r = max(int(nnz.max()) if len(nnz) else 1, 1) if width is None else int(width)
    if len(nnz) and nnz.max() > r:
        raise ValueError(f"a row has {int(nnz.max())} non-zeros, more than width {r}")
    n = X.shape[0]
    pos = np.arange(X.nnz) - np.repeat(X.indptr[:-1], nnz)
    rows = np.repeat(np.arange(n), nnz)
    cols = np.zeros((n, r), np.int32)
    vals = np.zeros((n, r), np.float32)
    cols[rows, pos] = X.indices
    vals[rows, pos] = X.data
    return PaddedRows(cols, vals)


# ----------------------------------------------------------------------------- loaders


def load_dataset(name: str, split: str) -> dict:
    """Mulan Bibtex/Delicious through the core registry: ``{"X", "Y", "label_names", ...}``."""
    from robustml_jax.core import datasets

    return datasets.load(name, split)


def load_xc_text(path: str | os.PathLike) -> dict:
    """Reads the Extreme Classification Repository text format.

    First line ``N D L``; then one line per instance: ``l1,l2,... f:v f:v ...`` (a line that
    starts with a blank has no labels).

    Returns:
      ``{"X": csr float32 [N, D], "Y": csr float32 [N, L]}``.

    Raises:
      ValueError: with the line number of a malformed line or an out-of-range index.
    """
    path = pathlib.Path(path)
    with open(path, encoding="utf-8") as f:
        header = f.readline().split()
        if len(header) != 3 or not all(h.isdigit() for h in header):
            raise ValueError(f"{path}:1: expected a header 'N D L', got {' '.join(header)!r}")
        n, d, num_labels = (int(h) for h in header)
        xr, xc, xv, yr, yc = [], [], [], [], []
        i = -1
        for i, raw in enumerate(f):
            lineno = i + 2
            line = raw.rstrip("\n")
            if i >= n:
                if line.strip():
                    raise ValueError(f"{path}:{lineno}: more rows than the header's N={n}")
                continue
            parts = line.split(" ")
            first, feats = parts[0], parts[1:]
            if ":" in first:  # no label field at all
                first, feats = "", parts
            try:
                labels = [int(t) for t in first.split(",") if t]
                pairs = [t.split(":") for t in feats if t]
                fi = [int(p[0]) for p in pairs]
                fv = [float(p[1]) for p in pairs]
                if any(len(p) != 2 for p in pairs):
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: malformed line {line[:60]!r}") from None
            if any(not 0 <= j < num_labels for j in labels):
                raise ValueError(f"{path}:{lineno}: label index out of [0, {num_labels})")
            if any(not 0 <= j < d for j in fi):
                raise ValueError(f"{path}:{lineno}: feature index out of [0, {d})")
            xr += [i] * len(fi)
            xc += fi
            xv += fv
            yr += [i] * len(labels)
            yc += labels
        if i + 1 < n:
            raise ValueError(f"{path}: header says {n} rows, found {i + 1}")
    X = sp.csr_matrix((np.array(xv, np.float32), (xr, xc)), shape=(n, d))
    Y = sp.csr_matrix((np.ones(len(yr), np.float32), (yr, yc)), shape=(n, num_labels))
    return {"X": X, "Y": check_labels(Y, allow_empty=True)}


def load_pecos_npz(x_path: str | os.PathLike, y_path: str | os.PathLike | None = None) -> dict:
    """Reads PECOS-layout scipy ``.npz`` matrices (``X.trn.npz``, ``Y.trn.npz``, ...).

    Returns:
      ``{"X": csr float32 [N, D]}`` plus ``"Y"`` (binary csr [N, L]) when ``y_path`` is given.
    """
    out = {"X": check_features(sp.load_npz(x_path))}
    if y_path is not None:
        Y = check_labels(sp.load_npz(y_path), allow_empty=True)
        if Y.shape[0] != out["X"].shape[0]:
            raise ValueError(f"{y_path}: {Y.shape[0]} rows but X has {out['X'].shape[0]}")
        out["Y"] = Y
    return out


# ----------------------------------------------------------------------------- synthetic


def synthetic_xmc(
    key: jax.Array,
    num_train: int,
    num_test: int,
    num_features: int,
    num_labels: int,
    *,
    nnz_per_row: int = 32,
    labels_per_row: float = 3.0,
    power: float = 1.0,
    words_per_label: int = 8,
    noise_frac: float = 0.5,
) -> dict:
    """A power-law multi-label problem with sparse TF-IDF-like features.

    Label frequencies follow Zipf's law (probability of label rank r proportional to
    r^-``power``); each label owns ``words_per_label`` random feature ids, an instance draws
    its non-zeros from the words of its labels plus ``noise_frac`` uniform noise words.
    Randomness comes only from ``key``; the host-side assembly is numpy.

    Returns:
      ``{"train": {"X", "Y"}, "test": {"X", "Y"}}`` with l2-normalised float32 CSR X.
    """
    n = num_train + num_test
    k_lab, k_cnt, k_words, k_pick, k_noise, k_val = jax.random.split(key, 6)
    ranks = jnp.arange(1, num_labels + 1, dtype=jnp.float32)
    logits = -power * jnp.log(ranks)
    # Labels per row uniform on {1, ..., 2 * labels_per_row - 1} (mean labels_per_row).
    max_labels = max(1, int(round(2 * labels_per_row - 1)))
    counts = np.asarray(jax.random.randint(k_cnt, (n,), 1, max_labels + 1))
    labels = np.asarray(jax.random.categorical(k_lab, logits, shape=(n, max_labels)))
    label_words = np.asarray(
        jax.random.randint(k_words, (num_labels, words_per_label), 0, num_features)
    )
    n_sig = max(1, int(round(nnz_per_row * (1 - noise_frac))))
    n_noise = nnz_per_row - n_sig
    slot = np.asarray(jax.random.randint(k_pick, (n, n_sig), 0, 1 << 30)) % counts[:, None]
    word = np.asarray(jax.random.randint(jax.random.fold_in(k_pick, 1), (n, n_sig), 0, 1 << 30))
    sig_cols = label_words[labels[np.arange(n)[:, None], slot], word % words_per_label]
    noise_cols = np.asarray(jax.random.randint(k_noise, (n, n_noise), 0, num_features))
    cols = np.concatenate([sig_cols, noise_cols], axis=1)
    vals = np.asarray(jax.random.uniform(k_val, cols.shape, minval=0.5, maxval=1.5))
    rows = np.repeat(np.arange(n), cols.shape[1])
    X = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(n, num_features))
    X.sum_duplicates()
    X = l2_normalize_rows(X)
    ymask = np.arange(max_labels)[None, :] < counts[:, None]
    yr = np.repeat(np.arange(n), max_labels)[ymask.ravel()]
    Y = sp.csr_matrix(
        (np.ones(len(yr), np.float32), (yr, labels.ravel()[ymask.ravel()])),
        shape=(n, num_labels),
    )
    Y = check_labels(Y)
    return {
        "train": {"X": X[:num_train], "Y": Y[:num_train]},
        "test": {"X": X[num_train:], "Y": Y[num_train:]},
    }
