"""Probe tests of ENOS (official ``src/algorithms/utils_search.py``, class ``Visit``).

- :func:`rule_fingerprint`: probe hashing for duplicate detection. Every operand gets its own
  independent N(0, 1) probe of D = 25 values (m2: the square of its own draw, as ENOS squares
  only the second moments; g^2, g^3, sign(g), sign(m1) derived from g and m1), t = 30, T = 100,
  noise and dropout off; the output rounded to 5 significant digits is the fingerprint (ENOS
  compares mean |diff| < 1e-6 with every evaluated rule; rounding makes it a hash).
- :func:`semantic_valid`: on a semantic probe (G ~ N(0, 1) / 60; first-moment, previous-gradient
  and Adam / RMSprop operands = G; second moment G^2; third G^3; weights 1e-3) the output is
  finite, has both signs, changes when the probe is redrawn (summed |diff| > 1e-6), and the rule
  reads an input other than the constants, noise and step counters. The probe sets m1 = g, so
  sign(g) (1 + sign(m1)) (AddSign) is never negative on it: ENOS's own test rejects AddSign.
- :func:`descent_valid`: mean cosine between the rule's output and the gradient over 25 semantic
  probes > 0.15.

Probes run eagerly on tiny arrays (a few dozen dispatches per rule); keys are fixed, so every
test is a deterministic function of the rule. Shapes: D = 25 probe values, K = 25 probes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.optsearch._language import OPS, Context, Rule, as_rule, rule_ops
from robustml_jax.optsearch._optimizer import evaluate_rule

__all__ = ["descent_score", "descent_valid", "rule_fingerprint", "semantic_valid"]

PROBE_DIM = 25
NUM_DESCENT_PROBES = 25
DESCENT_THRESHOLD = 0.15


@functools.lru_cache(maxsize=1)
def _hash_context() -> Context:
    k = jax.random.split(jax.random.key(20230501), 8)
    z = [jax.random.normal(ki, (PROBE_DIM,)) for ki in k]
    t, T = jnp.float32(30.0), jnp.float32(100.0)
    return Context(
        g=z[0],
        g_prev=z[1],
        m1=z[2],
        m2=z[3] ** 2,
        m3=z[4],
        adam=z[5],
        rmsprop=z[6],
        w=z[7],
        t=t,
        T=T,
        deterministic=True,
    )


def _semantic_context(key: jax.Array, shape: tuple[int, ...]) -> Context:
    G = jax.random.normal(key, shape) / 60.0
    return Context(
        g=G,
        g_prev=G,
        m1=G,
        m2=G**2,
        m3=G**3,
        adam=G,
        rmsprop=G,
        w=jnp.full(shape, 1e-3),
        t=jnp.float32(30.0),
        T=jnp.float32(100.0),
    )


def rule_fingerprint(rule: Rule | str) -> tuple:
    """Probe hash of a rule (ENOS's duplicate detection).

    Rules that agree on the probe (commuted sums, ``mul(g, two)`` and ``add(g, g)``) get the
    same fingerprint; rules that differ on it (``g``, ``m1``, ``sign(g)``) get different ones.

    Args:
      rule: a complete rule or its text.

    Returns:
      a hashable tuple of D = 25 rounded outputs (non-finite values as strings).
    """
    out = np.asarray(evaluate_rule(as_rule(rule), jax.random.key(0), _hash_context()))
    return tuple(
        f"{v:.4e}" if not np.isfinite(v) else float(f"{v:.4e}") + 0.0 for v in out.tolist()
    )


def _reads_input(rule: Rule) -> bool:
    return any(
        OPS[n].kind == "operand"
        and not OPS[n].decay
        and n not in ("one", "two", "noise")
        and OPS[n].out_type == "atom"
        for n in rule_ops(rule)
    )


def semantic_valid(rule: Rule | str) -> bool:
    """ENOS's semantic test (module docstring); False also for non-finite outputs."""
    rule = as_rule(rule)
    if not _reads_input(rule):
        return False
    k1, k2, k3 = jax.random.split(jax.random.key(7), 3)
    out1 = np.asarray(evaluate_rule(rule, k3, _semantic_context(k1, (PROBE_DIM,))))
    out2 = np.asarray(evaluate_rule(rule, k3, _semantic_context(k2, (PROBE_DIM,))))
    if not (np.all(np.isfinite(out1)) and np.all(np.isfinite(out2))):
        return False
    both_signs = bool(np.any(out1 > 0) and np.any(out1 < 0))
    changes = float(np.sum(np.abs(out1 - out2))) > 1e-6
    return both_signs and changes


def descent_score(rule: Rule | str) -> float:
    """Mean cosine between the rule's output and the gradient over K = 25 semantic probes.

    Returns:
      the mean cosine in [-1, 1]; NaN when an output is non-finite or zero.
    """
    rule = as_rule(rule)
    k1, k2 = jax.random.split(jax.random.key(11))
    ctx = _semantic_context(k1, (NUM_DESCENT_PROBES, PROBE_DIM))
    u = np.asarray(evaluate_rule(rule, k2, ctx), np.float64)
    g = np.asarray(ctx.g, np.float64)
    u = np.broadcast_to(u, g.shape)
    cos = np.sum(u * g, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(g, axis=-1))
    return float(np.mean(cos))


def descent_valid(rule: Rule | str, threshold: float = DESCENT_THRESHOLD) -> bool:
    """ENOS's descent test: :func:`descent_score` > ``threshold`` (0.15)."""
    with np.errstate(all="ignore"):
        s = descent_score(rule)
    return bool(np.isfinite(s) and s > threshold)
