"""The super-tree, MCTS and random search on cheap toy objectives, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import optsearch
from robustml_jax.optsearch import Rule, parse_rule

SPACE = optsearch.get_space("gnn_v1")


def test_children_fill_the_first_hole():
    root = Rule("?atom")
    kids = optsearch.children(root, SPACE, max_depth=10)
    assert [k.op for k in kids] == list(SPACE.ops)
    add = next(k for k in kids if k.op == "add")
    assert str(add) == "add(?, ?)"
    grand = optsearch.children(add, SPACE, max_depth=10)
    assert all(str(g).endswith(", ?)") for g in grand)  # the left hole is filled first
    # with two nodes left, only operands fit the first of two holes
    tight = optsearch.children(add, SPACE, max_depth=3)
    assert {OP.op for OP in (g.args[0] for g in tight)} <= {
        o for o in SPACE.ops if optsearch.OPS[o].kind == "operand"
    }
    assert all(g.size <= 3 for g in tight)


def test_typed_space_closes_const_holes_with_constants():
    space = optsearch.get_space("mnistnet")
    scale = parse_rule("scale(g, c0p9)")
    assert scale.formula == "0.9 * g"
    node = optsearch.children(Rule("?atom"), space, max_depth=10)
    sc = next(k for k in node if k.op == "scale")
    filled = optsearch.children(
        optsearch.children(sc, space, max_depth=10)[-1], space, max_depth=10
    )
    assert {k.args[1].op for k in filled} == {"c0p9", "c0p99", "c0p999", "step_decay"}


def test_bad_spaces_and_names():
    with pytest.raises(ValueError, match="search space 'x' is empty"):
        optsearch.make_space("x", [])
    with pytest.raises(ValueError, match="unknown operator or operand 'frob'"):
        optsearch.make_space("x", ["add", "frob"])
    with pytest.raises(ValueError, match="no operand of type 'atom'"):
        optsearch.make_space("x", ["add", "sign"])
    with pytest.raises(ValueError, match="no operand of type 'const'"):
        optsearch.make_space("x", ["scale", "g"])
    with pytest.raises(ValueError, match="unknown search space 'nope'"):
        optsearch.get_space("nope")
    with pytest.raises(ValueError, match="unknown task 'imagenet'"):
        optsearch.get_task("imagenet")


_TARGET = parse_rule("mul(sign_g, add(one, sign_m1))")


def _toy_score(rule):
    """Distance of a rule's probe output to AddSign's: 0 exactly for AddSign's equivalents."""
    a = np.array(optsearch.rule_fingerprint(rule), dtype=object)
    b = np.array(optsearch.rule_fingerprint(_TARGET), dtype=np.float64)
    try:
        a = a.astype(np.float64)
    except ValueError:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.mean(np.abs(a - b)))


def _search(method, seed, budget=10, **kw):
    fn = optsearch.mcts_search if method == "mcts" else optsearch.random_search
    if method == "mcts":
        kw.setdefault("num_mc_samples", 4)
    return fn(jax.random.key(seed), _toy_score, space=SPACE, budget=budget, max_depth=6, **kw)


def test_search_respects_budget_and_deduplicates():
    for method in ("mcts", "random"):
        res = _search(method, 0)
        assert len(res.evaluations) == 10
        fps = [optsearch.rule_fingerprint(e.rule) for e in res.evaluations]
        assert len(set(fps)) == len(fps)
        assert all(optsearch.semantic_valid(e.rule) for e in res.evaluations)
        assert all(optsearch.descent_valid(e.rule) for e in res.evaluations)
        assert np.all(np.diff(res.curve) <= 0)
        for e in res.evaluations:
            assert parse_rule(str(e.rule)) == e.rule
    mcts = _search("mcts", 0)
    assert len(mcts.path) >= 2 and mcts.path[0] == "?"


def test_search_is_deterministic():
    a, b = _search("mcts", 3), _search("mcts", 3)
    assert [e.rule for e in a.evaluations] == [e.rule for e in b.evaluations]


def test_nonfinite_scores_are_recorded_and_the_search_goes_on():
    def score(rule):
        return float("nan") if "exp" in str(rule) or "div" in str(rule) else _toy_score(rule)

    res = optsearch.mcts_search(
        jax.random.key(1), score, space=SPACE, budget=24, num_mc_samples=8, max_depth=6, bound=15.0
    )
    bad = [e for e in res.evaluations if e.status == "nonfinite"]
    assert bad and all(e.score == 15.0 for e in bad)
    assert len(res.evaluations) == 24


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget must be positive"):
        _search("random", 0, budget=0)


def test_mcts_descends_into_the_best_child():
    """After each level, MCTS samples only below the child it moved to, and that child had the
    best mean score among the first level's children."""
    res = _search("mcts", 2, budget=12, num_mc_samples=4)
    moved = res.path[1]
    op = moved.split("(")[0]
    later = res.evaluations[4:]
    assert later and all(e.rule.op == op for e in later)
    by_child = {}
    for e in res.evaluations[:4]:
        if e.status == "ok" and e.rule.size > 1:
            by_child.setdefault(e.rule.op, []).append(e.score)
    means = {k: np.mean(v) for k, v in by_child.items()}
    assert op == min(means, key=means.get)


def test_train_losses_shapes_and_pairing():
    data = {
        "x": jax.random.normal(jax.random.key(0), (64, 8)),
        "y": jnp.arange(64, dtype=jnp.int32) % 3,
    }
    task = optsearch.get_task("mnistnet", input_shape=(8,), num_classes=3)
    vocab = ("g", "adam")  # a two-way switch compiles fast
    ev = optsearch.make_program_evaluator(
        task, num_seeds=2, num_steps=5, batch_size=8, vocabulary=vocab
    )
    lrs = jnp.array([0.0, 0.1])
    enc = lambda r: optsearch.encode_rule(r, max_nodes=2, vocabulary=vocab)
    losses = np.asarray(ev(enc("g"), jax.random.key(1), data, lrs))
    assert losses.shape == (2, 2, 5)
    # lr 0: the loss only depends on the seed's init and batches, not on the rule
    l2 = np.asarray(ev(enc("adam"), jax.random.key(1), data, lrs))
    np.testing.assert_allclose(losses[0], l2[0], rtol=1e-6)
    assert not np.allclose(losses[0, 0], losses[0, 1])  # seeds differ
    score, best = optsearch.search_score(losses)
    assert best == 1 and score == pytest.approx(losses[1].mean(), rel=1e-6)
    assert optsearch.search_score(np.full((2, 1, 3), np.nan))[0] == float("inf")
    with pytest.raises(ValueError, match="not in the program's vocabulary"):
        optsearch.encode_rule("m1", vocabulary=vocab)
    with pytest.raises(ValueError, match=r"learning_rates must be \[L\]"):
        optsearch.train_losses(
            jax.random.key(0),
            data,
            jnp.ones((2, 2)),
            task=task,
            make_tx=lambda lr, k: None,
            num_seeds=1,
            num_steps=2,
            batch_size=4,
        )


@pytest.mark.parametrize(
    "name, shape, kw",
    [
        pytest.param("conv", (8, 8, 3), {"conv_width": 4}, marks=pytest.mark.slow),
        ("text", (16,), {}),
        ("mnistnet_2layer", (5,), {}),
    ],
)
def test_other_tasks_init_and_loss(name, shape, kw):
    task = optsearch.get_task(name, input_shape=shape, num_classes=3, **kw)
    x = np.random.default_rng(0).normal(size=(4,) + shape).astype(np.float32)
    # one compilation instead of many eager per-op ones
    loss = jax.jit(lambda k, x, y: task.loss(task.init(k), x, y))(
        jax.random.key(0), x, jnp.array([0, 1, 2, 0])
    )
    assert np.isfinite(float(loss)) and float(loss) > 0
    with pytest.raises(ValueError, match="task 'text' needs input_shape"):
        optsearch.get_task("text")


def test_hashed_bag_of_words():
    x = optsearch.hashed_bag_of_words(["a good film", "A GOOD film film", ""], dim=64)
    assert x.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(x[:2], axis=1), 1.0, rtol=1e-6)
    assert np.all(x[2] == 0)
    assert np.count_nonzero(x[0]) == 3 and np.argmax(x[1]) == np.argmax(x[1] * (x[0] > 0))
