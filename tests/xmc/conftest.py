"""Shared fixtures: one small synthetic problem and one trained ensemble for the whole folder
(compilation dominates these tests, so every test reuses the same shapes)."""

from __future__ import annotations

import pathlib

import jax
import pytest

from robustml_jax import xmc
from robustml_jax.core import datasets

REPO = pathlib.Path(__file__).resolve().parents[2]


def require(name: str) -> None:
    """Skips the test with the dataset's how-to-get message when ``name`` is absent."""
    try:
        datasets.locate(name)
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def problem():
    d = xmc.synthetic_xmc(
        jax.random.key(1), 600, 150, 400, 48, nnz_per_row=12, labels_per_row=2.0, power=0.7
    )
    return d["train"]["X"], d["train"]["Y"], d["test"]["X"], d["test"]["Y"]


@pytest.fixture(scope="session")
def members(problem):
    """Three members (seeds 0, 1, 2; the third on a bootstrap sample): 8 leaf clusters of 6."""
    X, Y, _, _ = problem
    return [
        xmc.fit_member(
            X,
            Y,
            key=jax.random.fold_in(jax.random.key(0), m),
            bootstrap=m == 2,
            max_leaf_size=6,
            newton_iters=3,
            cg_iters=6,
        )
        for m in range(3)
    ]


@pytest.fixture(scope="session")
def model(members):
    return members[0]


@pytest.fixture(scope="session")
def long_tail():
    """A strongly long-tailed problem (Zipf exponent 1.5) and a 2-member ensemble on it, one
    member on a bootstrap sample: 16 leaf clusters of 4 labels."""
    d = xmc.synthetic_xmc(
        jax.random.key(5), 500, 120, 300, 64, nnz_per_row=10, labels_per_row=2.0, power=1.5
    )
    X, Y = d["train"]["X"], d["train"]["Y"]
    members = [
        xmc.fit_member(
            X, Y, key=jax.random.key(10 + m), bootstrap=m == 1, max_leaf_size=4, cg_iters=4
        )
        for m in range(2)
    ]
    return members, d["test"]["X"], d["test"]["Y"]
