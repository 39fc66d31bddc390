"""Extreme multi-label classification: data, metrics, an XR-Linear-style tree model with beam
search, and ensemble uncertainty quantification (paper 6; the substrate for ELIAS, paper 7)."""

from robustml_jax.xmc._data import (
    PaddedRows,
    check_features,
    check_labels,
    l2_normalize_rows,
    load_dataset,
    load_pecos_npz,
    load_xc_text,
    pad_rows,
    synthetic_xmc,
)
from robustml_jax.xmc._metrics import (
    auroc,
    average_precision,
    inverse_propensity,
    labels_to_padded,
    ranking_metrics,
    topk_hits,
)
from robustml_jax.xmc._tree import (
    BeamOutput,
    Level,
    TreeModel,
    balanced_kmeans,
    beam_search,
    fit_tree_model,
    load_model,
    pifa_embeddings,
    predict,
    save_model,
    score_all_labels,
)

__all__ = [
    "BeamOutput",
    "Level",
    "PaddedRows",
    "TreeModel",
    "auroc",
    "average_precision",
    "balanced_kmeans",
    "beam_search",
    "check_features",
    "check_labels",
    "fit_tree_model",
    "inverse_propensity",
    "l2_normalize_rows",
    "labels_to_padded",
    "load_dataset",
    "load_model",
    "load_pecos_npz",
    "load_xc_text",
    "pad_rows",
    "pifa_embeddings",
    "predict",
    "ranking_metrics",
    "save_model",
    "score_all_labels",
    "synthetic_xmc",
    "topk_hits",
]
