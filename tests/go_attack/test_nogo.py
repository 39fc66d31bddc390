"""NoGo: the jitted environment against the pure-Python flood-fill reference on random
playouts (legal masks, termination, winner), hand-made positions, and the API contract."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.go_attack import make_nogo
from robustml_jax.go_attack.nogo import legal_mask, reference_legal_mask, reference_playout


@functools.cache
def _runner(size, t):
    env = make_nogo(size, 2)

    def one(key, actions):
        s = env.init(key)

        def body(s, a):
            out = (s.legal_action_mask, s.terminated, s.rewards)
            s = env.step(s, a)
            return s, out

        s, (masks, terms, rews) = jax.lax.scan(body, s, actions)
        return s, masks, terms, rews

    return jax.jit(jax.vmap(one))


def _check_playouts(size, num, seed):
    rng = np.random.default_rng(seed)
    env = make_nogo(size, 2)
    keys = jax.random.split(jax.random.key(seed), num)
    first = np.asarray(jax.vmap(env.init)(keys).current_player)
    games = [reference_playout(size, rng, int(f)) for f in first]
    t = max(len(a) for a, _, _ in games) + 1
    acts = np.zeros((num, t), np.int32)
    for i, (a, _, _) in enumerate(games):
        acts[i, : len(a)] = a
    final, masks, terms, rews = _runner(size, t)(keys, jnp.asarray(acts))
    masks, terms, rews = np.asarray(masks), np.asarray(terms), np.asarray(rews)
    terminated_final = np.asarray(final.terminated)
    for i, (a, ref_masks, winner) in enumerate(games):
        n = len(a)
        np.testing.assert_array_equal(masks[i, :n], np.stack(ref_masks[:n]))
        assert not terms[i, :n].any() and np.all(rews[i, :n] == 0)
        # the state after the last move (recorded at index n): terminated, last mover wins
        assert terms[i, n] and terminated_final[i], (size, i)
        assert rews[i, n, winner] == 1.0 and rews[i, n, 1 - winner] == -1.0


@pytest.mark.parametrize("size", [3, 4, 5, 7])
def test_matches_reference_random_playouts(size):
    _check_playouts(size, 80, size)  # 320 playouts in all


@pytest.mark.slow
@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_matches_reference_many_playouts(size):
    _check_playouts(size, 1000, 100 + size)


def test_hand_positions():
    # 3x3, rows from the top. Black at (0,1), white at (0,0): black at (1,0) would capture
    # white's corner stone -> illegal for black; white at (1,0) is legal (its group keeps (1,1)).
    b = np.zeros(9, np.int32)
    b[1], b[0] = 1, -1
    m_black = np.asarray(legal_mask(jnp.asarray(b), jnp.int32(0), 3))
    m_white = np.asarray(legal_mask(jnp.asarray(b), jnp.int32(1), 3))
    assert not m_black[3] and m_white[3]
    np.testing.assert_array_equal(m_black, reference_legal_mask(b, 0, 3))
    np.testing.assert_array_equal(m_white, reference_legal_mask(b, 1, 3))
    # suicide: white stones at (0,1) and (1,0) around the empty corner: black at (0,0) is
    # suicide, and white filling its own last shared liberty... (1,1) empty keeps it legal
    b = np.zeros(9, np.int32)
    b[1], b[3] = -1, -1
    assert not bool(legal_mask(jnp.asarray(b), jnp.int32(0), 3)[0])
    assert bool(legal_mask(jnp.asarray(b), jnp.int32(1), 3)[0])


def test_api_contract_and_illegal_move():
    env = make_nogo(5)
    init, step = jax.jit(env.init), jax.jit(env.step)
    firsts = {int(init(jax.random.key(i)).current_player) for i in range(16)}
    assert firsts == {0, 1}  # random first player, as pgx
    s = init(jax.random.key(0))
    assert s.legal_action_mask.shape == (25,) and s.legal_action_mask.dtype == jnp.bool_
    assert s.rewards.shape == (2,) and not bool(s.terminated)
    p0 = int(s.current_player)
    s = step(s, jnp.int32(12))
    assert int(s.current_player) == 1 - p0 and not bool(s.legal_action_mask[12])
    s = step(s, jnp.int32(12))  # occupied: the mover (1 - p0) loses at once
    assert bool(s.terminated)
    assert s.rewards[1 - p0] == -1 and s.rewards[p0] == 1


def test_bad_size():
    with pytest.raises(ValueError, match="board size"):
        make_nogo(1)
