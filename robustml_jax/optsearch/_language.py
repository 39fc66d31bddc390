"""The typed expression language of update rules (ENOS, Wang et al.; official code
``src/dsl/functions/operator_functions.py``).

A rule is a tree of named operators over named operands, written as nested calls with a space
after each comma, e.g. ``mul(sign_g, add(one, sign_m1))`` (AddSign). :class:`Rule` is a
hashable ``NamedTuple``; ``str(rule)`` prints that text back and ``rule.formula`` a readable
infix formula. The semantics of every operand and operator (the table in issue 12) live in
:data:`OPS`; both the baked-in optimizer (:func:`rule_to_optax`) and the interpreter
(:func:`program_to_optax`) evaluate rules through these same functions.

Shapes: P is the number of scalar parameters of the model (operands are flat vectors [P]) or
any batch shape of a probe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ATOM",
    "CONST",
    "OPS",
    "OP_NAMES",
    "Context",
    "Op",
    "Rule",
    "parse_rule",
    "rule_ops",
]

ATOM = "atom"  # a tensor-valued expression (every operator of the conv / GNN spaces)
CONST = "const"  # a scalar factor, only in the MNISTNet space (``scale(x, c)``)


class Context(NamedTuple):
    """The inputs a rule reads at one step (all [P] float32 except t, T: scalars).

    ``deterministic`` (a static Python bool) switches noise and dropout off (probe hashing).
    """

    g: jax.Array
    g_prev: jax.Array
    m1: jax.Array
    m2: jax.Array
    m3: jax.Array
    adam: jax.Array
    rmsprop: jax.Array
    w: jax.Array
    t: jax.Array
    T: jax.Array
    deterministic: bool = False


class Op(NamedTuple):
    """One operator or operand.

    Attributes:
      name: the word used in rule texts.
      arg_types: the types of its arguments (empty for operands).
      out_type: ``ATOM`` or ``CONST``.
      fn: ``fn(ctx, key, *args) -> array`` (shape of ``ctx.g``); ``key`` is the node's own PRNG
        key (used by noise and dropout only).
      fmt: infix template for :attr:`Rule.formula` with ``{0}``, ``{1}`` for the arguments.
      kind: ``"operand"``, ``"unary"`` or ``"binary"``.
      decay: True for the step-counter operands (they do not count as an input in the
        semantic test).
    """

    name: str
    arg_types: tuple[str, ...]
    out_type: str
    fn: Callable[..., jax.Array]
    fmt: str
    kind: str
    decay: bool = False


def _full(ctx: Context, value) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(value, ctx.g.dtype), ctx.g.shape)


def _sign(x):
    return jnp.sign(x)  # sign(0) = 0 (torch.sign and jnp.sign agree)


def _noise(std):
    def fn(ctx, key):
        if ctx.deterministic:
            return jnp.zeros_like(ctx.g)
        return std(ctx) * jax.random.normal(key, ctx.g.shape, ctx.g.dtype)

    return fn


def _dropout(p):
    def fn(ctx, key, x):
        if ctx.deterministic:
            return x
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        return jnp.where(keep, x / (1.0 - p), 0.0)

    return fn


def _decay(rate, floor=0.0):
    def fn(ctx, key):
        del key
        return _full(ctx, rate(ctx.t, ctx.T) + floor)

    return fn


def _linear(t, T):
    return 1.0 - t / T


def _cosine(t, T):
    return 0.5 * (1.0 + jnp.cos(math.pi * t / T))


def _restart(t, T):
    return 0.5 * (1.0 + jnp.cos(math.pi * jnp.mod(20.0 * t, T) / T))


def _step_decay(t, T):
    # The official MNISTNet space names a StepDecayFunction that the code never defines; ours
    # halves the factor at each quarter of training (documented in BUILD_NOTES).
    return 0.5 ** jnp.floor(4.0 * (t - 1.0) / T)


def _operand(name, value, fmt, *, out_type=ATOM, decay=False):
    return Op(name, (), out_type, lambda ctx, key: value(ctx), fmt, "operand", decay)


def _unary(name, f, fmt):
    return Op(name, (ATOM,), ATOM, lambda ctx, key, x: f(x), fmt, "unary")


def _binary(name, f, fmt, arg_types=(ATOM, ATOM)):
    return Op(name, arg_types, ATOM, lambda ctx, key, x, y: f(x, y), fmt, "binary")


def _build_ops() -> dict[str, Op]:
    ops = [
        # operands (ENOS: G, G2, G3, Gp, M1, M2, M3, SG, SM1, 1, 2, Noise, W1..W4, Adam, RMSprop)
        _operand("g", lambda c: c.g, "g"),
        _operand("g2", lambda c: c.g**2, "g^2"),
        _operand("g3", lambda c: c.g**3, "g^3"),
        _operand("g_prev", lambda c: c.g_prev, "g_prev"),
        _operand("m1", lambda c: c.m1, "m1"),
        _operand("m2", lambda c: c.m2, "m2"),
        _operand("m3", lambda c: c.m3, "m3"),
        _operand("sign_g", lambda c: _sign(c.g), "sign(g)"),
        _operand("sign_m1", lambda c: _sign(c.m1), "sign(m1)"),
        _operand("one", lambda c: _full(c, 1.0), "1"),
        _operand("two", lambda c: _full(c, 2.0), "2"),
        Op("noise", (), ATOM, _noise(lambda c: 0.01), "noise", "operand"),
        _operand("w", lambda c: c.w, "w"),
        _operand("w_0p1", lambda c: 0.1 * c.w, "0.1w"),
        _operand("w_0p01", lambda c: 0.01 * c.w, "0.01w"),
        _operand("w_0p001", lambda c: 0.001 * c.w, "0.001w"),
        _operand("adam", lambda c: c.adam, "adam"),
        _operand("rmsprop", lambda c: c.rmsprop, "rmsprop"),
        # decays (t = 1 at the first update, T = total steps)
        Op("linear_decay", (), ATOM, _decay(_linear), "ld", "operand", True),
        Op("cosine_decay", (), ATOM, _decay(_cosine), "cd", "operand", True),
        Op("restart_decay", (), ATOM, _decay(_restart), "rd", "operand", True),
        Op(
            "annealed_noise",
            (),
            ATOM,
            _noise(lambda c: (1.0 + c.t) ** -0.55),
            "ep",
            "operand",
            True,
        ),
        Op("linear_decay_min", (), ATOM, _decay(_linear, 0.01), "ldm", "operand", True),
        Op("cosine_decay_min", (), ATOM, _decay(_cosine, 0.03), "cdm", "operand", True),
        Op("restart_decay_min", (), ATOM, _decay(_restart, 0.03), "rdm", "operand", True),
        Op(
            "annealed_noise_min",
            (),
            ATOM,
            lambda c, k: _noise(lambda c: (1.0 + c.t) ** -0.55)(c, k) + 0.03,
            "epm",
            "operand",
            True,
        ),
        # the MNISTNet space's scalar factors
        _operand("c0p9", lambda c: _full(c, 0.9), "0.9", out_type=CONST),
        _operand("c0p99", lambda c: _full(c, 0.99), "0.99", out_type=CONST),
        _operand("c0p999", lambda c: _full(c, 0.999), "0.999", out_type=CONST),
        Op("step_decay", (), CONST, _decay(_step_decay), "sd", "operand", True),
        # unary
        _unary("neg", lambda x: -x, "-{0}"),
        _unary("exp", jnp.exp, "exp({0})"),
        _unary("log", lambda x: jnp.log(jnp.abs(x)), "log|{0}|"),
        _unary("sqrt", lambda x: jnp.sqrt(jnp.abs(x)), "sqrt|{0}|"),
        _unary("sign", _sign, "sign({0})"),
        _unary("clip3", lambda x: jnp.clip(x, -1e-3, 1e-3), "clip({0}, 1e-3)"),
        _unary("clip4", lambda x: jnp.clip(x, -1e-4, 1e-4), "clip({0}, 1e-4)"),
        _unary("clip5", lambda x: jnp.clip(x, -1e-5, 1e-5), "clip({0}, 1e-5)"),
        Op("drop1", (ATOM,), ATOM, _dropout(0.1), "drop({0}, 0.1)", "unary"),
        Op("drop3", (ATOM,), ATOM, _dropout(0.3), "drop({0}, 0.3)", "unary"),
        Op("drop5", (ATOM,), ATOM, _dropout(0.5), "drop({0}, 0.5)", "unary"),
        # binary
        _binary("add", jnp.add, "({0} + {1})"),
        _binary("sub", jnp.subtract, "({0} - {1})"),
        _binary("mul", jnp.multiply, "({0} * {1})"),
        _binary("div", lambda x, y: x / (y + 1e-8), "({0} / {1})"),
        _binary("pow", jnp.power, "({0} ^ {1})"),
        _binary("scale", jnp.multiply, "({1} * {0})", arg_types=(ATOM, CONST)),
    ]
    return {op.name: op for op in ops}


OPS: dict[str, Op] = _build_ops()
OP_NAMES: tuple[str, ...] = tuple(OPS)  # the interpreter's opcode order


class Rule(NamedTuple):
    """An update rule (or a sub-expression): an operator name and its argument rules.

    ``str(rule)`` is the rule's text (``parse_rule(str(rule)) == rule``); :attr:`formula` is a
    readable infix formula. A partial rule of the search may hold holes (``op`` ``"?atom"``,
    ``"?const"``), printed as ``?``.
    """

    op: str
    args: tuple[Rule, ...] = ()

    def __str__(self) -> str:
        if self.op.startswith("?"):
            return "?"
        if not self.args:
            return self.op
        return f"{self.op}({', '.join(str(a) for a in self.args)})"

    def __repr__(self) -> str:
        return f"Rule({str(self)!r})"

    @property
    def formula(self) -> str:
        """Readable infix formula, e.g. ``sign(g) * (1 + sign(m1))``."""
        text = self._formula()
        if text.startswith("(") and _balanced(text[1:-1]):
            text = text[1:-1]
        return text

    def _formula(self) -> str:
        if self.op.startswith("?"):
            return "?"
        return OPS[self.op].fmt.format(*(a._formula() for a in self.args))

    @property
    def size(self) -> int:
        """Number of nodes (holes included)."""
        return 1 + sum(a.size for a in self.args)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_]*)|(\()|(\))|(,))")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"rule {text!r}: unexpected character {text[pos:].strip()[0]!r}")
        out.append(m.group(0).strip())
        pos = m.end()
    return out


def parse_rule(text: str) -> Rule:
    """Parses a rule text such as ``mul(sign_g, add(one, sign_m1))``.

    Args:
      text: nested calls over the words of :data:`OPS` (whitespace around commas is optional;
        the printed form has one space after each comma).

    Returns:
      the :class:`Rule`; ``str`` of it gives back the canonical text.

    Raises:
      ValueError: one line naming the offending word: an unknown operator (``frob(g)``) or
        operand (``mul(g, zz9)``), a wrong number of arguments (``add(g)``, ``sign(g, m1)``), an
        operator used without arguments, an operand given arguments, or malformed text.
    """
    if not isinstance(text, str):
        raise ValueError(f"rule text must be a str, got {type(text).__name__}")
    toks = _tokens(text)
    if not toks:
        raise ValueError("rule text is empty")
    pos = 0

    def expr() -> Rule:
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"rule {text!r}: ends early, an operand or operator is missing")
        word = toks[pos]
        if word in "(),":
            raise ValueError(f"rule {text!r}: expected an operand or operator, got {word!r}")
        pos += 1
        called = pos < len(toks) and toks[pos] == "("
        if word not in OPS:
            what = "operator" if called else "operand"
            raise ValueError(f"rule {text!r}: unknown {what} {word!r}")
        op = OPS[word]
        if not called:
            if op.arg_types:
                n = len(op.arg_types)
                raise ValueError(
                    f"rule {text!r}: operator {word!r} takes {n} argument{'s' * (n > 1)}, got 0"
                )
            return Rule(word)
        pos += 1
        args = []
        if pos < len(toks) and toks[pos] == ")":
            pos += 1
        else:
            while True:
                args.append(expr())
                if pos >= len(toks):
                    raise ValueError(f"rule {text!r}: missing ')' after {word!r}'s arguments")
                if toks[pos] == ",":
                    pos += 1
                    continue
                if toks[pos] == ")":
                    pos += 1
                    break
                raise ValueError(f"rule {text!r}: expected ',' or ')', got {toks[pos]!r}")
        n = len(op.arg_types)
        if not n:
            raise ValueError(f"rule {text!r}: operand {word!r} takes no arguments")
        if len(args) != n:
            raise ValueError(
                f"rule {text!r}: operator {word!r} takes {n} argument{'s' * (n > 1)}, "
                f"got {len(args)}"
            )
        for i, (a, ty) in enumerate(zip(args, op.arg_types, strict=True)):
            if OPS[a.op].out_type != ty:
                raise ValueError(
                    f"rule {text!r}: argument {i + 1} of {word!r} must be of type {ty}, "
                    f"got {a.op!r} of type {OPS[a.op].out_type}"
                )
        return Rule(word, tuple(args))

    rule = expr()
    if pos != len(toks):
        raise ValueError(f"rule {text!r}: unexpected {toks[pos]!r} after the rule")
    if OPS[rule.op].out_type != ATOM:
        raise ValueError(f"rule {text!r}: {rule.op!r} is a scalar factor, not a rule")
    return rule


def rule_ops(rule: Rule) -> set[str]:
    """The set of operator and operand words a rule uses."""
    out = {rule.op}
    for a in rule.args:
        out |= rule_ops(a)
    return out


def as_rule(rule: Any) -> Rule:
    """A :class:`Rule` from a rule or its text."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        return parse_rule(rule)
    raise ValueError(f"rule must be a Rule or its text, got {type(rule).__name__}")
