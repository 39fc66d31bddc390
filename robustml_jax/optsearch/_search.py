"""The super-tree of update rules and its level-by-level Monte Carlo tree search (ENOS,
official ``src/algorithms/nos_mc_sampling.py``, ``src/program_graph.py``), plus random search.

Super-tree: a node is a partial rule whose holes (``?``) are still to be filled; a child fills
the first hole (pre-order) with one operator or operand of the hole's type, its own arguments
becoming new holes. Every complete rule of at most ``max_depth`` nodes is a root-to-leaf path.
A child's cost is its parent's plus the number of holes it opens (ENOS's edge cost), and
sampling picks a child with probability proportional to its cost (zero costs are raised to the
smallest positive one), which favours longer rules.

MCTS (ENOS's ``MC_SAMPLING_NOS.run``): at the current node, draw complete rules below a child
chosen ∝ cost; reject rules failing the semantic or descent test; reuse the score of a rule
whose probe fingerprint was evaluated before (duplicates do not consume the budget); evaluate
the rest until ``num_mc_samples`` new evaluations; score each child that is not complete by the
mean score of its samples that beat the validity bound; move to the best child; repeat. Stop
after ``budget`` evaluations or when more than ``max_sampled_factor * budget`` rules passed the
tests (duplicates included). Random search draws from the root with the same sampler, tests,
duplicate detection, budget and stopping rule.

Scores are minimised (losses); pass the negated metric for accuracies. A NaN/inf score (a rule
whose updates blow up) becomes the bound and is recorded with status ``"nonfinite"``.

The search is a host-side loop (the evaluation callback is where the jitted work happens); its
random draws come from ``jax.random`` in blocks, so a search is a deterministic function of its
key and of the scores, and re-running it against cached scores replays it exactly (resume).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from robustml_jax.optsearch._language import ATOM, OPS, Rule
from robustml_jax.optsearch._probes import descent_valid, rule_fingerprint, semantic_valid

__all__ = [
    "SPACES",
    "Evaluation",
    "SearchResult",
    "SearchSpace",
    "children",
    "get_space",
    "make_space",
    "mcts_search",
    "random_search",
    "sample_rule",
]

_BINARY = ("add", "sub", "mul", "div", "pow")
_UNARY_CONV = ("neg", "exp", "log", "sqrt", "clip5", "clip4", "clip3")
_UNARY_CONV += ("drop1", "drop3", "drop5", "sign")
_OPERANDS = ("g", "g2", "g3", "m1", "m2", "m3", "sign_g", "sign_m1", "one", "two")


class SearchSpace(NamedTuple):
    """A search space: the operator and operand words allowed (in ENOS's order)."""

    name: str
    ops: tuple[str, ...]


def make_space(name: str, ops: Sequence[str]) -> SearchSpace:
    """Validates and builds a search space.

    Raises:
      ValueError: empty, an unknown word, or a type with no operand to close its holes.
    """
    ops = tuple(ops)
    if not ops:
        raise ValueError(f"search space {name!r} is empty")
    for o in ops:
        if o not in OPS:
            raise ValueError(f"search space {name!r}: unknown operator or operand {o!r}")
    types = {t for o in ops for t in OPS[o].arg_types} | {ATOM}
    for ty in types:
        if not any(OPS[o].kind == "operand" and OPS[o].out_type == ty for o in ops):
            raise ValueError(f"search space {name!r} has no operand of type {ty!r}")
    return SearchSpace(name, ops)


SPACES: dict[str, SearchSpace] = {
    # dsl_conv.py: the conv space (all unary ops, weight terms, noise, decays)
    "conv": make_space(
        "conv",
        _BINARY
        + _UNARY_CONV
        + _OPERANDS
        + ("noise", "w", "w_0p1", "w_0p01", "w_0p001")
        + ("linear_decay", "cosine_decay", "restart_decay", "annealed_noise"),
    ),
    # dsl_gnn_v1.py: the default of the official MNISTNet script (mc-mnistnet.sh uses dsl gnn-v1)
    "gnn_v1": make_space(
        "gnn_v1",
        _BINARY
        + ("neg", "exp", "log", "sqrt", "clip3", "drop1", "sign")
        + _OPERANDS
        + ("adam", "rmsprop", "linear_decay_min", "cosine_decay_min", "restart_decay_min"),
    ),
    # dsl_mnistnet.py: the smaller typed MNISTNet space (scale by a constant or step decay)
    "mnistnet": make_space(
        "mnistnet",
        ("add", "mul", "div", "sign", "sqrt", "scale", "g", "g_prev", "m1", "m2")
        + ("c0p9", "c0p99", "c0p999", "step_decay"),
    ),
}


def get_space(name: str) -> SearchSpace:
    """The named search space of :data:`SPACES` (ValueError naming the unknown name)."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name]


class _Node(NamedTuple):
    rule: Rule
    cost: float


def _hole(ty: str) -> Rule:
    return Rule("?" + ty)


def _first_hole(rule: Rule) -> tuple[int, ...] | None:
    if rule.op.startswith("?"):
        return ()
    for i, a in enumerate(rule.args):
        p = _first_hole(a)
        if p is not None:
            return (i,) + p
    return None


def _replace(rule: Rule, path: tuple[int, ...], new: Rule) -> Rule:
    if not path:
        return new
    args = list(rule.args)
    args[path[0]] = _replace(args[path[0]], path[1:], new)
    return Rule(rule.op, tuple(args))


def _get(rule: Rule, path: tuple[int, ...]) -> Rule:
    for i in path:
        rule = rule.args[i]
    return rule


def is_complete(rule: Rule) -> bool:
    """True when the rule has no holes."""
    return _first_hole(rule) is None


def children(node_rule: Rule, space: SearchSpace, *, max_depth: int) -> list[Rule]:
    """Children of a partial rule in the super-tree (fill the first hole; at most max_depth
    nodes once every hole holds one operand)."""
    path = _first_hole(node_rule)
    if path is None:
        return []
    ty = _get(node_rule, path).op[1:]
    out = []
    for name in space.ops:
        op = OPS[name]
        if op.out_type != ty:
            continue
        child = _replace(node_rule, path, Rule(name, tuple(_hole(t) for t in op.arg_types)))
        if child.size <= max_depth:
            out.append(child)
    return out


def _children_nodes(node: _Node, space, max_depth) -> list[_Node]:
    return [
        _Node(c, node.cost + len(OPS[_get(c, _first_hole(node.rule)).op].arg_types))
        for c in children(node.rule, space, max_depth=max_depth)
    ]


class _Uniforms:
    """Uniform [0, 1) numbers from ``jax.random`` in blocks (a host-side stream)."""

    def __init__(self, key: jax.Array, block: int = 4096):
        self._key, self._block, self._n = key, block, 0
        self._buf = np.zeros([0])
        self._i = 0

    def __call__(self) -> float:
        if self._i >= len(self._buf):
            k = jax.random.fold_in(self._key, self._n)
            self._buf = np.asarray(jax.random.uniform(k, (self._block,)), np.float64)
            self._n += 1
            self._i = 0
        self._i += 1
        return float(self._buf[self._i - 1])


def _choose(nodes: list[_Node], u: _Uniforms) -> _Node:
    w = np.array([n.cost for n in nodes], np.float64)
    pos = w[w > 0]
    w = np.where(w > 0, w, pos.min() if len(pos) else 1.0)
    c = np.cumsum(w / w.sum())
    return nodes[min(int(np.searchsorted(c, u(), side="right")), len(nodes) - 1)]


def _mc_sample(node: _Node, space, max_depth, u: _Uniforms) -> _Node:
    while not is_complete(node.rule):
        node = _choose(_children_nodes(node, space, max_depth), u)
    return node


def sample_rule(key: jax.Array, *, space: SearchSpace, max_depth: int = 10) -> Rule:
    """One complete rule drawn from the root of the super-tree (cost-weighted, as ENOS)."""
    return _mc_sample(_Node(_hole(ATOM), 0.0), space, max_depth, _Uniforms(key)).rule


class Evaluation(NamedTuple):
    """One evaluated rule: its score (bound for non-finite) and status
    (``"ok"``, ``"bound"``: not better than the bound, ``"nonfinite"``)."""

    rule: Rule
    score: float
    status: str


class SearchResult(NamedTuple):
    """What a search did.

    Attributes:
      evaluations: the evaluated rules in order (at most ``budget``).
      curve: float [E], best score after each evaluation.
      num_sampled: complete rules that passed the tests (duplicates included).
      num_rejected: complete rules rejected by the semantic or descent test.
      num_duplicates: rules whose fingerprint matched an evaluated one.
      path: the partial rules MCTS moved through (texts; empty for random search).
    """

    evaluations: tuple[Evaluation, ...]
    curve: np.ndarray
    num_sampled: int
    num_rejected: int
    num_duplicates: int
    path: tuple[str, ...]

    def top(self, n: int = 10) -> list[Evaluation]:
        """The n best evaluations (lowest scores first)."""
        return sorted(self.evaluations, key=lambda e: e.score)[:n]


class _Searcher:
    """Shared state of a search: tests, duplicate table, budget accounting."""

    def __init__(
        self, evaluate_fn, *, budget, bound, descent_threshold, max_sampled_factor, log_fn
    ):
        if budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        self.evaluate_fn = evaluate_fn
        self.budget, self.bound = budget, float(bound)
        self.descent_threshold = descent_threshold
        self.max_sampled = int(budget * max_sampled_factor)
        self.log_fn = log_fn
        self.valid_cache: dict[Rule, bool] = {}
        self.by_fp: dict[tuple, int] = {}
        self.evals: list[Evaluation] = []
        self.sampled = self.rejected = self.dups = 0

    def done(self) -> bool:
        return len(self.evals) >= self.budget or self.sampled > self.max_sampled

    def valid(self, rule: Rule) -> bool:
        if rule not in self.valid_cache:
            with np.errstate(all="ignore"):
                ok = semantic_valid(rule) and descent_valid(rule, self.descent_threshold)
            self.valid_cache[rule] = ok
        return self.valid_cache[rule]

    def try_rule(self, rule: Rule) -> tuple[Evaluation, bool] | None:
        """Tests, deduplicates and (if new) evaluates a rule; None when rejected."""
        if not self.valid(rule):
            self.rejected += 1
            return None
        self.sampled += 1
        fp = rule_fingerprint(rule)
        if fp in self.by_fp:
            self.dups += 1
            return self.evals[self.by_fp[fp]], False
        raw = float(self.evaluate_fn(rule))
        if not math.isfinite(raw):
            ev = Evaluation(rule, self.bound, "nonfinite")
        elif raw >= self.bound:
            ev = Evaluation(rule, self.bound, "bound")
        else:
            ev = Evaluation(rule, raw, "ok")
        self.by_fp[fp] = len(self.evals)
        self.evals.append(ev)
        if self.log_fn is not None:
            self.log_fn(len(self.evals), ev)
        return ev, True

    def result(self, path) -> SearchResult:
        scores = np.array([e.score for e in self.evals], np.float64)
        curve = np.minimum.accumulate(scores) if len(scores) else scores
        return SearchResult(
            tuple(self.evals), curve, self.sampled, self.rejected, self.dups, tuple(path)
        )


def mcts_search(
    key: jax.Array,
    evaluate_fn: Callable[[Rule], float],
    *,
    space: SearchSpace,
    budget: int = 128,
    num_mc_samples: int = 32,
    max_depth: int = 10,
    bound: float = 15.0,
    clip_score: bool = True,
    max_sampled_factor: float = 3.5,
    max_draws_per_level: int = 4500,
    descent_threshold: float = 0.15,
    log_fn: Callable[[int, Evaluation], None] | None = None,
) -> SearchResult:
    """ENOS's level-by-level Monte Carlo tree search over the super-tree (module docstring).

    Args:
      key: PRNG key of the search's random draws.
      evaluate_fn: ``evaluate_fn(rule) -> score`` to minimise (e.g. the best mean training loss
        over the learning-rate grid); called once per new fingerprint.
      space: the :class:`SearchSpace`.
      budget: evaluations (ENOS: 128).
      num_mc_samples: new evaluations per level (ENOS: 32).
      max_depth: most nodes of a rule (ENOS: 10).
      bound: validity bound (ENOS: loss 15); scores not below it do not score a child when
        ``clip_score``; non-finite scores become the bound.
      clip_score: ENOS's score clipping (on by default).
      max_sampled_factor: stop when more than this x budget rules passed the tests (3.5).
      max_draws_per_level: ENOS's safety cap on draws per level (4500).
      descent_threshold: the descent test's threshold (0.15).
      log_fn: optional ``log_fn(num_evaluated, evaluation)`` after each new evaluation.

    Returns:
      the :class:`SearchResult`.
    """
    s = _Searcher(
        evaluate_fn,
        budget=budget,
        bound=bound,
        descent_threshold=descent_threshold,
        max_sampled_factor=max_sampled_factor,
        log_fn=log_fn,
    )
    u = _Uniforms(key)
    current = _Node(_hole(ATOM), 0.0)
    path = [str(current.rule)]
    while not is_complete(current.rule) and not s.done():
        kids = _children_nodes(current, space, max_depth)
        scores: dict[Rule, list[float]] = defaultdict(list)
        new_evals = draws = 0
        while new_evals < num_mc_samples and draws < max_draws_per_level and not s.done():
            draws += 1
            child = _choose(kids, u)
            sample = _mc_sample(child, space, max_depth, u)
            out = s.try_rule(sample.rule)
            if out is None:
                continue
            ev, is_new = out
            if ev.status == "ok" or not clip_score:
                scores[child.rule].append(ev.score)
            new_evals += is_new
        # score each incomplete child by the mean of its samples; move to the best one
        best, best_score = None, math.inf
        for child in kids:
            vals = scores.get(child.rule, [])
            if vals and not is_complete(child.rule):
                m = float(np.mean(vals))
                if m < best_score:
                    best, best_score = child, m
        if best is None:  # no information at this level: ENOS moves to the first child
            best = next((c for c in kids if not is_complete(c.rule)), kids[0])
        current = best
        path.append(str(current.rule))
    return s.result(path)


def random_search(
    key: jax.Array,
    evaluate_fn: Callable[[Rule], float],
    *,
    space: SearchSpace,
    budget: int = 128,
    max_depth: int = 10,
    bound: float = 15.0,
    max_sampled_factor: float = 3.5,
    max_draws: int = 100_000,
    descent_threshold: float = 0.15,
    log_fn: Callable[[int, Evaluation], None] | None = None,
) -> SearchResult:
    """Random search with MCTS's sampler, tests, duplicate detection, budget and stopping rule.

    Args: as :func:`mcts_search` (``max_draws``: safety cap on all draws).

    Returns:
      the :class:`SearchResult` (empty ``path``).
    """
    s = _Searcher(
        evaluate_fn,
        budget=budget,
        bound=bound,
        descent_threshold=descent_threshold,
        max_sampled_factor=max_sampled_factor,
        log_fn=log_fn,
    )
    u = _Uniforms(key)
    root = _Node(_hole(ATOM), 0.0)
    draws = 0
    while not s.done() and draws < max_draws:
        draws += 1
        s.try_rule(_mc_sample(root, space, max_depth, u).rule)
    return s.result([])
