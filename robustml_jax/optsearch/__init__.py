"""ENOS: efficient non-parametric optimizer search (paper 10), in JAX.

Update rules are expressions of a typed language (:func:`parse_rule`, :class:`Rule`); a rule
becomes an optax optimizer baked in (:func:`rule_to_optax`) or interpreted by one compiled
program for every rule (:func:`encode_rule`, :func:`program_to_optax`). The search walks the
super-tree of rules by ENOS's level-by-level Monte Carlo tree search (:func:`mcts_search`) with
ENOS's semantic and descent tests and probe hashing (:func:`rule_fingerprint`); random search
(:func:`random_search`) is the baseline. :func:`train_losses` trains a learning-rate grid x seeds
of one optimizer in one jitted call on the tasks of :data:`TASKS`.
"""

from robustml_jax.optsearch._baselines import BASELINES, addsign, powsign
from robustml_jax.optsearch._language import OPS, Context, Op, Rule, parse_rule, rule_ops
from robustml_jax.optsearch._optimizer import (
    MAX_NODES,
    Program,
    RuleState,
    encode_rule,
    evaluate_rule,
    program_to_optax,
    rule_to_optax,
    run_program,
)
from robustml_jax.optsearch._probes import (
    descent_score,
    descent_valid,
    rule_fingerprint,
    semantic_valid,
)
from robustml_jax.optsearch._search import (
    SPACES,
    Evaluation,
    SearchResult,
    SearchSpace,
    children,
    get_space,
    is_complete,
    make_space,
    mcts_search,
    random_search,
    sample_rule,
)
from robustml_jax.optsearch._tasks import (
    TASKS,
    Task,
    get_task,
    hashed_bag_of_words,
    make_program_evaluator,
    search_score,
    train_losses,
)

__all__ = [
    "BASELINES",
    "MAX_NODES",
    "OPS",
    "SPACES",
    "TASKS",
    "Context",
    "Evaluation",
    "Op",
    "Program",
    "Rule",
    "RuleState",
    "SearchResult",
    "SearchSpace",
    "Task",
    "addsign",
    "children",
    "descent_score",
    "descent_valid",
    "encode_rule",
    "evaluate_rule",
    "get_space",
    "get_task",
    "hashed_bag_of_words",
    "is_complete",
    "make_program_evaluator",
    "make_space",
    "mcts_search",
    "parse_rule",
    "powsign",
    "program_to_optax",
    "random_search",
    "rule_fingerprint",
    "rule_ops",
    "rule_to_optax",
    "run_program",
    "sample_rule",
    "search_score",
    "semantic_valid",
    "train_losses",
]
