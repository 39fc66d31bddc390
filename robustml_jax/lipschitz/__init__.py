"""Local Lipschitz constants by bound propagation on the Clarke Jacobian (paper 9).

Shi, Wang, Zhang, Kolter, Hsieh, "Efficiently Computing Local Lipschitz Constants of Neural
Networks via Bound Propagation", NeurIPS 2022 (arXiv 2210.07394).

    from robustml_jax import lipschitz
    bound = lipschitz.local_lipschitz_bound([(W1, b1), (W2, b2)], x0, 0.1, method="ours")
"""

from robustml_jax.lipschitz._bab import (
    BaBResult,
    BudgetedBaB,
    branch_and_bound,
    budgeted_branch_and_bound,
)
from robustml_jax.lipschitz._bounds import (
    BRANCHING,
    METHODS,
    BudgetedBound,
    GradientBounds,
    budgeted_lipschitz_bound,
    gradient_bounds,
    local_lipschitz_bound,
    naive_bound,
    partial_derivative_bound,
    preactivation_bounds,
)
from robustml_jax.lipschitz._data import Tabular, diabetes_data, image_data, synthetic_data
from robustml_jax.lipschitz._evaluate import (
    ALL_METHODS,
    BOUND_METHODS,
    BoundTable,
    MonotoneCertificates,
    bounds_table,
    certify_monotone,
    evaluate_bounds,
    point_items,
    summarize,
)
from robustml_jax.lipschitz._graph import (
    GRAPH_ACTIVATIONS,
    GraphNode,
    activation_derivative_range,
    activation_relaxation,
    chain_graph,
    graph_forward,
    graph_gradient_bounds,
    graph_lipschitz_bound,
    graph_network,
)
from robustml_jax.lipschitz._models import cnn, mlp, train_model
from robustml_jax.lipschitz._network import (
    Affine,
    AvgPool,
    Flatten,
    as_network,
    forward,
    from_dense,
    from_flax,
)
from robustml_jax.lipschitz._plots import monotonicity_figure, sweep_figure, time_figure
from robustml_jax.lipschitz._reference import (
    ExactLipschitz,
    exact_lipschitz,
    gradient_norm,
    sampled_lower_bound,
)

__all__ = [
    "ALL_METHODS",
    "BOUND_METHODS",
    "BRANCHING",
    "METHODS",
    "Affine",
    "AvgPool",
    "BaBResult",
    "BoundTable",
    "BudgetedBaB",
    "BudgetedBound",
    "GRAPH_ACTIVATIONS",
    "GraphNode",
    "ExactLipschitz",
    "Flatten",
    "GradientBounds",
    "MonotoneCertificates",
    "Tabular",
    "as_network",
    "activation_derivative_range",
    "activation_relaxation",
    "bounds_table",
    "chain_graph",
    "branch_and_bound",
    "budgeted_branch_and_bound",
    "budgeted_lipschitz_bound",
    "certify_monotone",
    "cnn",
    "diabetes_data",
    "evaluate_bounds",
    "exact_lipschitz",
    "forward",
    "from_dense",
    "from_flax",
    "gradient_bounds",
    "graph_forward",
    "graph_gradient_bounds",
    "graph_lipschitz_bound",
    "graph_network",
    "gradient_norm",
    "image_data",
    "local_lipschitz_bound",
    "mlp",
    "monotonicity_figure",
    "naive_bound",
    "partial_derivative_bound",
    "point_items",
    "preactivation_bounds",
    "sampled_lower_bound",
    "summarize",
    "sweep_figure",
    "synthetic_data",
    "time_figure",
    "train_model",
]
