"""Update rules as optax optimizers: baked in (:func:`rule_to_optax`) or interpreted
(:func:`program_to_optax`, one compiled program for every rule of at most N nodes).

ENOS's optimizer (official ``src/nos/opt_learned.py``) keeps, per parameter, the statistics the
operands read; we keep all of them for every rule (they cost a few vectors [P]) so that every rule
has the same state structure:

- ``m1``: momentum *sum*: m1_1 = g_1, m1_t = 0.9 m1_{t-1} + g_t (no dampening, no bias
  correction);
- ``m2``: m2_1 = g_1^2, m2_t = 0.999 m2_{t-1} + 0.001 g_t^2 (no bias correction);
- ``m3``: the same with g^3 (ENOS's code accumulates g^2 after its g^3 initialisation, a bug we do
  not copy);
- ``adam``: PyTorch Adam's step at lr 3e-3 (bias-corrected, betas 0.9 / 0.999, eps 1e-8);
- ``rmsprop``: PyTorch RMSprop's step at lr 3e-2 (alpha 0.99, eps 1e-8, zero initialised);
- ``g_prev``: the previous gradient (0 at the first step).

The update is ``-learning_rate * rule(context)``; t = 1 at the first update. Parameters of any
pytree are flattened into one vector [P] (``jax.flatten_util.ravel_pytree``), so noise and
dropout draw one key per rule node and step.

Shapes: P parameters, N program nodes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from robustml_jax.optsearch._language import (
    ATOM,
    OP_NAMES,
    OPS,
    Context,
    Rule,
    as_rule,
    rule_ops,
)

__all__ = [
    "MAX_NODES",
    "Program",
    "RuleState",
    "encode_rule",
    "evaluate_rule",
    "program_to_optax",
    "rule_to_optax",
]

MAX_NODES = 10  # ENOS's max_depth: a rule has at most 10 nodes

_NEEDS_T = {"linear_decay", "cosine_decay", "restart_decay", "step_decay"}
_NEEDS_T |= {n + "_min" for n in ("linear_decay", "cosine_decay", "restart_decay")}
_NEEDS_KEY = {"noise", "annealed_noise", "annealed_noise_min", "drop1", "drop3", "drop5"}


class RuleState(NamedTuple):
    """Optimizer state of a rule: step count, moving statistics [P] and a PRNG key."""

    count: jax.Array
    g_prev: jax.Array
    m1: jax.Array
    m2: jax.Array
    m3: jax.Array
    adam_m: jax.Array
    adam_v: jax.Array
    rms_v: jax.Array
    key: jax.Array


class Program(NamedTuple):
    """A rule encoded for the interpreter: N nodes in post-order, the output is node N-1.

    Attributes:
      ops: int32 [N], index into the vocabulary (by default ``OP_NAMES``; unused leading nodes
        hold its first operand).
      left: int32 [N], index of the first argument's node (0 for operands).
      right: int32 [N], index of the second argument's node (0 for operands and unary ops).
    """

    ops: jax.Array
    left: jax.Array
    right: jax.Array


def _init_state(flat: jax.Array, key: jax.Array) -> RuleState:
    z = jnp.zeros_like(flat)
    return RuleState(jnp.zeros([], jnp.int32), z, z, z, z, z, z, z, key)


def _advance(state: RuleState, g: jax.Array) -> tuple[RuleState, jax.Array]:
    """Updates the statistics with gradient g [P]; returns (new state, t as float)."""
    count = state.count + 1
    t = count.astype(g.dtype)
    first = count == 1
    m1 = jnp.where(first, g, 0.9 * state.m1 + g)
    m2 = jnp.where(first, g**2, 0.999 * state.m2 + 0.001 * g**2)
    m3 = jnp.where(first, g**3, 0.999 * state.m3 + 0.001 * g**3)
    adam_m = 0.9 * state.adam_m + 0.1 * g
    adam_v = 0.999 * state.adam_v + 0.001 * g**2
    rms_v = 0.99 * state.rms_v + 0.01 * g**2
    new = RuleState(count, g, m1, m2, m3, adam_m, adam_v, rms_v, state.key)
    return new, t


def _context(state: RuleState, g_prev, g, w, t, T) -> Context:
    bc1 = 1.0 - 0.9**t
    bc2 = 1.0 - 0.999**t
    adam = 3e-3 * (state.adam_m / bc1) / (jnp.sqrt(state.adam_v) / jnp.sqrt(bc2) + 1e-8)
    rmsprop = 3e-2 * g / (jnp.sqrt(state.rms_v) + 1e-8)
    return Context(g, g_prev, state.m1, state.m2, state.m3, adam, rmsprop, w, t, T)


def _postorder(rule: Rule) -> list[tuple[str, tuple[int, ...]]]:
    """Nodes in post-order as (op, child indices); the root is last."""
    nodes: list[tuple[str, tuple[int, ...]]] = []

    def visit(r: Rule) -> int:
        kids = tuple(visit(a) for a in r.args)
        nodes.append((r.op, kids))
        return len(nodes) - 1

    visit(rule)
    return nodes


def evaluate_rule(rule: Rule, key: jax.Array, ctx: Context) -> jax.Array:
    """Evaluates a rule on one context (jittable; the rule is static).

    Args:
      rule: a complete :class:`Rule`.
      key: PRNG key of this evaluation; the node at post-order position i of m uses
        ``fold_in(key, m - 1 - i)`` (the root uses 0), exactly as the interpreter does.
      ctx: the operands' values, each [P] (or any common shape).

    Returns:
      the rule's output, shape of ``ctx.g``.
    """
    vals: list[jax.Array] = []
    nodes = _postorder(rule)
    for i, (op, kids) in enumerate(nodes):
        if op.startswith("?"):
            raise ValueError(f"rule {rule} has a hole: complete it before evaluating")
        node_key = jax.random.fold_in(key, len(nodes) - 1 - i)
        vals.append(OPS[op].fn(ctx, node_key, *(vals[k] for k in kids)))
    return vals[-1]


def encode_rule(
    rule: Rule | str, *, max_nodes: int = MAX_NODES, vocabulary: tuple[str, ...] = OP_NAMES
) -> Program:
    """Encodes a rule for :func:`program_to_optax` (host side, NumPy arrays).

    Args:
      rule: a complete rule or its text.
      max_nodes: N, the program length (static in the interpreter).
      vocabulary: the words the opcodes index (e.g. a search space's ``ops``: a smaller switch
        compiles faster); the interpreter must get the same vocabulary.

    Returns:
      the :class:`Program` (int32 [N] arrays).

    Raises:
      ValueError: the rule has more than ``max_nodes`` nodes or a word outside the vocabulary.
    """
    rule = as_rule(rule)
    missing = sorted(rule_ops(rule) - set(vocabulary))
    if missing:
        raise ValueError(f"rule {rule}: {missing[0]!r} is not in the program's vocabulary")
    pad_op = next(i for i, o in enumerate(vocabulary) if not OPS[o].arg_types)
    nodes = _postorder(rule)
    if len(nodes) > max_nodes:
        raise ValueError(f"rule {rule} has {len(nodes)} nodes, more than max_nodes={max_nodes}")
    pad = max_nodes - len(nodes)
    ops = np.full([max_nodes], pad_op, np.int32)
    left = np.zeros([max_nodes], np.int32)
    right = np.zeros([max_nodes], np.int32)
    for i, (op, kids) in enumerate(nodes):
        ops[pad + i] = vocabulary.index(op)
        if kids:
            left[pad + i] = pad + kids[0]
            right[pad + i] = pad + kids[-1]
    return Program(ops, left, right)


def _branches(ctx: Context, vocabulary: tuple[str, ...]):
    # ctx is closed over (not a switch operand) so that its static flag stays a Python bool.
    out = []
    for name in vocabulary:
        op = OPS[name]
        arity = len(op.arg_types)

        def branch(key, x, y, op=op, arity=arity):
            return op.fn(ctx, key, *(x, y)[:arity])

        out.append(branch)
    return out


def run_program(
    program: Program, key: jax.Array, ctx: Context, *, vocabulary: tuple[str, ...] = OP_NAMES
) -> jax.Array:
    """Interprets a program on one context (jittable; the program may be traced).

    Every node is one ``lax.switch`` over all operators, so a single compiled program evaluates
    any rule of at most N nodes. Node i uses the key ``fold_in(key, N - 1 - i)`` (the root 0).

    Args:
      program: :class:`Program` with int32 [N] fields (unbatched: a batched opcode would turn
        the switch into a select over every operator).
      key: PRNG key of this evaluation.
      ctx: the operands' values, each [P].
      vocabulary: the words the opcodes index (static), as given to :func:`encode_rule`.

    Returns:
      the output of node N-1, [P].
    """
    program = Program(*(jnp.asarray(a, jnp.int32) for a in program))
    n = program.ops.shape[0]
    branches = _branches(ctx, tuple(vocabulary))
    buf = jnp.zeros((n,) + ctx.g.shape, ctx.g.dtype)

    def body(i, buf):
        x = buf[program.left[i]]
        y = buf[program.right[i]]
        node_key = jax.random.fold_in(key, n - 1 - i)
        val = jax.lax.switch(program.ops[i], branches, node_key, x, y)
        return buf.at[i].set(val)

    buf = jax.lax.fori_loop(0, n, body, buf)
    return buf[n - 1]


def _transform(apply_fn, learning_rate, total_steps, key) -> optax.GradientTransformation:
    base_key = jax.random.key(0) if key is None else key
    T = 1.0 if total_steps is None else float(total_steps)

    def init_fn(params):
        flat, _ = ravel_pytree(params)
        return _init_state(flat, base_key)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("the rule's update needs params: call update(grads, state, params)")
        g, unravel = ravel_pytree(updates)
        w, _ = ravel_pytree(params)
        g_prev = state.g_prev
        new_state, t = _advance(state, g)
        ctx = _context(new_state, g_prev, g, w, t, jnp.asarray(T, g.dtype))
        step_key = jax.random.fold_in(state.key, new_state.count)
        direction = apply_fn(step_key, ctx)
        return unravel(-learning_rate * direction), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def rule_to_optax(
    rule: Rule | str,
    learning_rate: float | jax.Array,
    *,
    total_steps: int | None = None,
    key: jax.Array | None = None,
) -> optax.GradientTransformation:
    """The optax optimizer of an update rule, with the rule baked into the traced code.

    ``update(grads, state, params)`` works on any parameter pytree and is jittable; the update
    is ``-learning_rate * rule(...)`` with the operands of the module docstring, t = 1 at the
    first update and T = ``total_steps``.

    Args:
      rule: a complete rule or its text (type ``atom``).
      learning_rate: scalar (may be traced, e.g. vmapped over a grid).
      total_steps: T, needed by rules that use a decay.
      key: PRNG key for ``noise``, annealed noise and dropout; needed by rules that use them
        (step s draws from ``fold_in(key, s)``).

    Returns:
      an ``optax.GradientTransformation`` whose state is a :class:`RuleState`.

    Raises:
      ValueError: a decay without ``total_steps`` or noise/dropout without ``key``.
    """
    rule = as_rule(rule)
    used = rule_ops(rule)
    if used & _NEEDS_T and total_steps is None:
        raise ValueError(f"rule {rule} uses {sorted(used & _NEEDS_T)[0]!r}: pass total_steps")
    if used & _NEEDS_KEY and key is None:
        raise ValueError(f"rule {rule} uses {sorted(used & _NEEDS_KEY)[0]!r}: pass key")
    if OPS[rule.op].out_type != ATOM:
        raise ValueError(f"rule {rule}: {rule.op!r} is a scalar factor, not a rule")
    return _transform(lambda k, ctx: evaluate_rule(rule, k, ctx), learning_rate, total_steps, key)


def program_to_optax(
    program: Program,
    learning_rate: float | jax.Array,
    *,
    total_steps: int,
    key: jax.Array,
    vocabulary: tuple[str, ...] = OP_NAMES,
) -> optax.GradientTransformation:
    """The optax optimizer of an encoded rule, interpreted (:func:`run_program`).

    Same update as :func:`rule_to_optax` of the encoded rule (up to float re-association
    inside XLA; noise and dropout draw the same keys). Pass the program as a traced argument of
    a jitted function so that one compilation serves every rule.

    Args:
      program: :class:`Program`, int32 [N] fields.
      learning_rate: scalar (may be traced).
      total_steps: T.
      key: PRNG key for noise and dropout.
      vocabulary: the words the opcodes index (static), as given to :func:`encode_rule`.

    Returns:
      an ``optax.GradientTransformation`` whose state is a :class:`RuleState`.
    """
    vocabulary = tuple(vocabulary)
    return _transform(
        lambda k, ctx: run_program(program, k, ctx, vocabulary=vocabulary),
        learning_rate,
        total_steps,
        key,
    )
