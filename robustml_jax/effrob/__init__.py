"""Effective robustness with multiple in-distribution test sets (Shi et al. 2023).

Public API::

    fit = fit_effective_robustness(id_acc, ood_acc, transform="logit")   # [M, K], [M]
    er = effective_robustness(fit, id_acc, ood_acc)                      # [M], fractions
    fit.coef, fit.intercept, fit.r2, fit.mae, fit.predict(id_acc)
"""

from robustml_jax.effrob._analysis import analyze_table, default_id_sets, write_analysis
from robustml_jax.effrob._bootstrap import (
    BootstrapResult,
    bootstrap_from_accuracies,
    bootstrap_from_correct,
    confidence_interval,
    group_means,
)
from robustml_jax.effrob._crossval import kfold_assignment, out_of_fold_predictions
from robustml_jax.effrob._evaluate import stack_params
from robustml_jax.effrob._features import hashed_ngrams
from robustml_jax.effrob._fit import (
    EffRobFit,
    effective_robustness,
    fit_effective_robustness,
    weighted_lstsq,
)
from robustml_jax.effrob._plot3d import plane_figure, plane_html
from robustml_jax.effrob._table import AccuracyTable, read_accuracy_csv, table_to_csv
from robustml_jax.effrob._transforms import TRANSFORMS, forward, inverse
from robustml_jax.effrob._zoo import (
    BowClassifier,
    ZooModel,
    model_grid,
    model_loss,
    train_zoo,
    train_zoo_models,
)

__all__ = [
    "TRANSFORMS",
    "AccuracyTable",
    "BootstrapResult",
    "BowClassifier",
    "EffRobFit",
    "ZooModel",
    "analyze_table",
    "bootstrap_from_accuracies",
    "bootstrap_from_correct",
    "confidence_interval",
    "default_id_sets",
    "effective_robustness",
    "fit_effective_robustness",
    "forward",
    "group_means",
    "hashed_ngrams",
    "inverse",
    "kfold_assignment",
    "model_grid",
    "model_loss",
    "out_of_fold_predictions",
    "plane_figure",
    "plane_html",
    "read_accuracy_csv",
    "stack_params",
    "table_to_csv",
    "train_zoo",
    "train_zoo_models",
    "weighted_lstsq",
    "write_analysis",
]
