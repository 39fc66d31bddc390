"""Extreme multi-label classification: data, metrics, an XR-Linear-style tree model with beam
search, and ensemble uncertainty quantification (paper 6; the substrate for ELIAS, paper 7).

Modules: ``_data`` (loaders, checks, padded rows, synthetic data), ``_cluster`` (PIFA, balanced
k-means), ``_rankers`` (level rankers, Newton-CG), ``_beam`` (beam search over any node scorer),
``_tree`` (the tree model), ``_io`` (atomic save/load), ``_uq`` (ensemble uncertainty),
``_evaluate`` (detection and beam-approximation studies), ``_elias`` (paper 7: ELIAS, the
learned cluster-to-label index, :func:`fit_elias` / :func:`predict_elias`).
"""

from robustml_jax.core.metrics import (
    auroc,
    average_precision,
    inverse_propensity,
    labels_to_padded,
    ranking_metrics,
    topk_hits,
)
from robustml_jax.xmc import _elias
from robustml_jax.xmc._beam import BeamOutput, ScoreFn, SlotBeam, all_paths, beam_search_slots
from robustml_jax.xmc._cluster import balanced_kmeans, level_depths, pifa_embeddings, split_depth
from robustml_jax.xmc._data import (
    PaddedRows,
    bucket_size,
    check_features,
    check_labels,
    l2_normalize_rows,
    load_dataset,
    load_pecos_npz,
    load_xc_text,
    pad_rows,
    synthetic_xmc,
)
from robustml_jax.xmc._elias import *  # noqa: F403 (its __all__, spliced into ours below)
from robustml_jax.xmc._evaluate import (
    DETECTION_METRICS,
    beam_approximation_errors,
    calibration_errors,
    detection_metrics,
    paired_detection,
)
from robustml_jax.xmc._io import load_model, model_items, save_model
from robustml_jax.xmc._rankers import (
    Level,
    LevelProblem,
    level_problem,
    make_pairs,
    newton_cg,
    solve_level,
)
from robustml_jax.xmc._tree import (
    TreeModel,
    beam_search,
    fit_tree_model,
    predict,
    score_all_labels,
    tree_scorer,
)
from robustml_jax.xmc._uq import (
    EnsembleOutput,
    InstanceUncertainty,
    LabelUncertainty,
    OODSplit,
    Uncertainty,
    binary_entropy,
    combine_members,
    ensemble_exact,
    ensemble_predict,
    exact_uncertainty,
    fit_member,
    instance_uncertainty,
    label_uncertainty,
    ood_split,
    uncertainty_scores,
)

__all__ = [
    *_elias.__all__,
    "DETECTION_METRICS",
    "BeamOutput",
    "EnsembleOutput",
    "InstanceUncertainty",
    "LabelUncertainty",
    "Level",
    "LevelProblem",
    "OODSplit",
    "PaddedRows",
    "ScoreFn",
    "SlotBeam",
    "TreeModel",
    "Uncertainty",
    "all_paths",
    "auroc",
    "average_precision",
    "balanced_kmeans",
    "beam_approximation_errors",
    "beam_search",
    "beam_search_slots",
    "binary_entropy",
    "bucket_size",
    "calibration_errors",
    "check_features",
    "check_labels",
    "combine_members",
    "detection_metrics",
    "ensemble_exact",
    "ensemble_predict",
    "exact_uncertainty",
    "fit_member",
    "fit_tree_model",
    "instance_uncertainty",
    "inverse_propensity",
    "l2_normalize_rows",
    "label_uncertainty",
    "labels_to_padded",
    "level_depths",
    "level_problem",
    "load_dataset",
    "load_model",
    "load_pecos_npz",
    "load_xc_text",
    "make_pairs",
    "model_items",
    "newton_cg",
    "ood_split",
    "pad_rows",
    "paired_detection",
    "pifa_embeddings",
    "predict",
    "ranking_metrics",
    "save_model",
    "score_all_labels",
    "solve_level",
    "split_depth",
    "synthetic_xmc",
    "topk_hits",
    "tree_scorer",
    "uncertainty_scores",
]
