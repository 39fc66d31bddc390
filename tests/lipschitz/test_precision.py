"""Bounds are traced with full-precision matmuls (TF32 on GPUs would break soundness)."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp

from robustml_jax import lipschitz


def _layers(key, sizes=(5, 7, 3)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (a, b)), jnp.zeros(b))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _precisions(jaxpr_text: str) -> set[str]:
    return set(re.findall(r"precision=\(?(?:Precision\.)?(\w+)", jaxpr_text))


def test_every_product_in_the_bound_is_highest_precision():
    layers = _layers(jax.random.key(0))
    x0 = jnp.ones(5)
    for method in ("ours", "recurjac", "naive"):
        bound = functools.partial(
            lipschitz.local_lipschitz_bound, layers, eps=0.1, method=method, bab_steps=2
        )
        text = str(jax.make_jaxpr(bound)(x0))
        assert "dot_general" in text
        assert _precisions(text) == {"HIGHEST"}, (method, _precisions(text))
    ref = str(jax.make_jaxpr(lambda x: lipschitz.gradient_norm(layers, x))(x0))
    assert _precisions(ref) == {"HIGHEST"}


def test_precision_setting_does_not_leak_to_the_caller():
    layers = _layers(jax.random.key(1))
    lipschitz.local_lipschitz_bound(layers, jnp.ones(5), 0.1)
    text = str(jax.make_jaxpr(lambda a, b: a @ b)(jnp.ones((2, 2)), jnp.ones((2, 2))))
    assert "HIGHEST" not in text
