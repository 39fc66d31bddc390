"""Local Lipschitz constants by bound propagation on the Clarke Jacobian (paper 9).

Shi, Wang, Zhang, Kolter, Hsieh, "Efficiently Computing Local Lipschitz Constants of Neural
Networks via Bound Propagation", NeurIPS 2022 (arXiv 2210.07394).

    from robustml_jax import lipschitz
    bound = lipschitz.local_lipschitz_bound([(W1, b1), (W2, b2)], x0, 0.1, method="ours")
"""

from robustml_jax.lipschitz._bab import BaBResult, branch_and_bound
from robustml_jax.lipschitz._bounds import (
    METHODS,
    GradientBounds,
    gradient_bounds,
    local_lipschitz_bound,
    naive_bound,
    partial_derivative_bound,
    preactivation_bounds,
)
from robustml_jax.lipschitz._network import (
    Affine,
    AvgPool,
    Flatten,
    as_network,
    forward,
    from_dense,
    from_flax,
)
from robustml_jax.lipschitz._reference import exact_lipschitz, gradient_norm, sampled_lower_bound

__all__ = [
    "METHODS",
    "Affine",
    "AvgPool",
    "BaBResult",
    "Flatten",
    "GradientBounds",
    "as_network",
    "branch_and_bound",
    "exact_lipschitz",
    "forward",
    "from_dense",
    "from_flax",
    "gradient_bounds",
    "gradient_norm",
    "local_lipschitz_bound",
    "naive_bound",
    "partial_derivative_bound",
    "preactivation_bounds",
    "sampled_lower_bound",
]
