"""NoGo (Computer Olympiad rules) as a jitted environment with pgx's interface.

Rules: players alternate placing a stone on an empty point; a move is illegal if it captures any
opponent stones or leaves its own group without liberties; there is no pass; the player to move
with no legal move loses. Actions are ``row * size + col`` (row 0 at the top, as in pgx's Go).

Public API (the issue's contract)::

    env = make_nogo(7)
    state = env.init(key)                 # jittable
    state = env.step(state, jnp.int32(a))  # jittable
    state.legal_action_mask  # bool [size*size] (no pass action)
    state.terminated         # bool []
    state.rewards            # float32 [2] by player id: 0 until the end, then +1 for the player
                             # who made the last move and -1 for the other
    state.current_player     # int32 0/1, alternating from its value at init (random, as in pgx)
    state.observation        # bool [size, size, 2*history_length+1], pgx Go's plane layout

``NULL_MOVE = size*size`` is an internal null move (never in the legal mask) that only the attack
uses to add a single stone of one colour ("stone, pass"); a game never plays it. An illegal
action ends the game with the mover losing, as in pgx.

:func:`reference_legal_mask` and :func:`reference_playout` are a straightforward pure-Python
reference (flood fill of each group) used by the tests.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "NoGo",
    "NoGoState",
    "make_nogo",
    "reference_legal_mask",
    "reference_playout",
]


@struct.dataclass
class NoGoState:
    current_player: jax.Array  # int32 []
    rewards: jax.Array  # float32 [2]
    terminated: jax.Array  # bool []
    truncated: jax.Array  # bool []
    legal_action_mask: jax.Array  # bool [N]
    observation: jax.Array  # bool [size, size, 2H+1]
    board: jax.Array  # int32 [N]: +1 black, -1 white, 0 empty
    board_history: jax.Array  # int32 [H, N], newest first (2 = before the game start)
    color: jax.Array  # int32 []: colour to move, 0 black, 1 white
    player_order: jax.Array  # int32 [2]: player id of black, white
    step_count: jax.Array  # int32 []


class _Adj(NamedTuple):
    idx: np.ndarray  # [N, 4] neighbour index (N where off board)
    valid: np.ndarray  # [N, 4] bool


@functools.cache
def _adjacency(size: int) -> _Adj:
    n = size * size
    idx = np.full((n, 4), n, np.int32)
    for p in range(n):
        r, c = divmod(p, size)
        for k, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
            rr, cc = r + dr, c + dc
            if 0 <= rr < size and 0 <= cc < size:
                idx[p, k] = rr * size + cc
    return _Adj(idx, idx < n)


def _labels(board: jax.Array, size: int) -> jax.Array:
    """Connected-component labels [N]: the smallest index of each stone's group (N for empty)."""
    n = size * size
    adj = _adjacency(size)
    idx, valid = jnp.asarray(adj.idx), jnp.asarray(adj.valid)
    padded = jnp.append(board, 0)
    same = valid & (padded[idx] == board[:, None]) & (board[:, None] != 0)  # [N, 4]
    init = jnp.where(board != 0, jnp.arange(n), n)

    def body(carry):
        lab, _ = carry
        nb = jnp.where(same, jnp.append(lab, n)[idx], n).min(-1)
        new = jnp.minimum(lab, nb)
        new = new[jnp.minimum(new, n - 1)] * (new < n) + n * (new >= n)  # pointer jumping
        new = jnp.minimum(new, lab)
        return new, jnp.any(new != lab)

    lab, _ = jax.lax.while_loop(lambda c: c[1], body, (init, jnp.bool_(True)))
    return lab


def legal_mask(board: jax.Array, color: jax.Array, size: int) -> jax.Array:
    """Legal NoGo moves [N] for ``color`` (0 black, 1 white) on ``board`` (+1/-1/0) [N]."""
    n = size * size
    adj = _adjacency(size)
    idx, valid = jnp.asarray(adj.idx), jnp.asarray(adj.valid)
    lab = _labels(board, size)
    empty = board == 0
    padded_empty = jnp.append(empty, False)
    # pseudo-liberties of each group, with sum and square sum of their indices (pgx's trick):
    # a group has exactly one liberty point iff sum^2 == count * sumsq
    n_empty_nb = (padded_empty[idx] & valid).sum(-1)  # [N]
    p = jnp.arange(n, dtype=jnp.int32)
    lib_idx = jnp.where(padded_empty[idx] & valid, idx, 0)
    s1 = lib_idx.sum(-1)
    s2 = (lib_idx * lib_idx).sum(-1)
    seg = jnp.where(board != 0, lab, n)
    cnt = jax.ops.segment_sum(n_empty_nb, seg, num_segments=n + 1)
    sum1 = jax.ops.segment_sum(s1, seg, num_segments=n + 1)
    sum2 = jax.ops.segment_sum(s2, seg, num_segments=n + 1)
    del p
    one_lib = (cnt > 0) & (sum1 * sum1 == cnt * sum2)  # [N+1] by label
    my = jnp.where(color == 0, 1, -1)
    nb_board = jnp.append(board, 0)[idx]  # [N, 4]
    nb_lab = jnp.append(lab, n)[idx]
    nb_atari = one_lib[nb_lab] & valid
    captures = (valid & (nb_board == -my) & nb_atari).any(-1)
    own_ok = (valid & (nb_board == my) & ~nb_atari).any(-1)
    has_lib = n_empty_nb > 0
    return empty & ~captures & (has_lib | own_ok)


class NoGo:
    """NoGo on a ``size`` x ``size`` board with ``history_length`` board planes per colour."""

    def __init__(self, size: int = 9, history_length: int = 8):
        if not isinstance(size, int) or not 2 <= size <= 19:
            raise ValueError(f"NoGo board size must be an int in [2, 19], got {size!r}")
        if not isinstance(history_length, int) or history_length < 1:
            raise ValueError(f"history_length must be a positive int, got {history_length!r}")
        self.size = size
        self.history_length = history_length
        self.num_actions = size * size
        self.null_move = size * size

    @property
    def id(self) -> str:
        return f"nogo_{self.size}x{self.size}"

    def observe(self, state: NoGoState) -> jax.Array:
        my = jnp.where(state.color == 0, 1, -1)

        def plane(i):
            c = jnp.where(i % 2 == 0, my, -my)
            return state.board_history[i // 2] == c

        log = jax.vmap(plane)(jnp.arange(2 * self.history_length))
        col = jnp.full_like(log[0], state.color == 1)
        return jnp.vstack([log, col[None]]).T.reshape(self.size, self.size, -1)

    def init(self, key: jax.Array) -> NoGoState:
        n = self.num_actions
        order = jnp.array([[0, 1], [1, 0]], jnp.int32)[jax.random.bernoulli(key).astype(jnp.int32)]
        hist = jnp.full((self.history_length, n), 2, jnp.int32).at[0].set(0)
        s = NoGoState(
            current_player=order[0],
            rewards=jnp.zeros(2, jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            legal_action_mask=jnp.ones(n, jnp.bool_),
            observation=jnp.zeros((self.size, self.size, 2 * self.history_length + 1), jnp.bool_),
            board=jnp.zeros(n, jnp.int32),
            board_history=hist,
            color=jnp.int32(0),
            player_order=order,
            step_count=jnp.int32(0),
        )
        return s.replace(observation=self.observe(s))

    def step(self, state: NoGoState, action: jax.Array) -> NoGoState:
        """One move; ``action == size*size`` is the attack's null move (stone-less turn)."""
        n = self.num_actions
        action = jnp.asarray(action, jnp.int32)
        is_null = action == n
        legal = jnp.append(state.legal_action_mask, True)[jnp.clip(action, 0, n)]
        mover = state.current_player
        my = jnp.where(state.color == 0, 1, -1)
        board = jnp.where(is_null, state.board, state.board.at[jnp.clip(action, 0, n - 1)].set(my))
        color = 1 - state.color
        hist = jnp.roll(state.board_history, n).at[0].set(board)
        mask = legal_mask(board, color, self.size)
        no_move = ~mask.any()
        over = state.terminated | state.truncated
        # the mover wins when the opponent has no legal move; an illegal move loses at once
        win = jnp.zeros(2, jnp.float32).at[mover].set(1.0).at[1 - mover].set(-1.0)
        rewards = jnp.where(legal, jnp.where(no_move, win, 0.0), -win)
        new = NoGoState(
            current_player=state.player_order[color],
            rewards=rewards,
            terminated=~legal | no_move,
            truncated=jnp.bool_(False),
            legal_action_mask=mask,
            observation=state.observation,
            board=board,
            board_history=hist,
            color=color,
            player_order=state.player_order,
            step_count=state.step_count + 1,
        )
        new = new.replace(legal_action_mask=jnp.where(new.terminated, True, new.legal_action_mask))
        new = new.replace(observation=self.observe(new))
        done = state.replace(rewards=jnp.zeros(2, jnp.float32))
        return jax.tree.map(lambda a, b: jnp.where(over, a, b), done, new)


def make_nogo(size: int, history_length: int = 8) -> NoGo:
    """The NoGo environment for a ``size`` x ``size`` board (see the module docstring)."""
    return NoGo(size, history_length)


# ---------------------------------------------------------------- pure-Python reference


def _group(board: list[int], p: int, size: int) -> tuple[set[int], set[int]]:
    """The group containing stone ``p`` and its liberties (flood fill)."""
    color, stack, seen, libs = board[p], [p], {p}, set()
    while stack:
        q = stack.pop()
        r, c = divmod(q, size)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < size and 0 <= cc < size:
                m = rr * size + cc
                if board[m] == 0:
                    libs.add(m)
                elif board[m] == color and m not in seen:
                    seen.add(m)
                    stack.append(m)
    return seen, libs


def reference_legal_mask(board, color: int, size: int) -> np.ndarray:
    """Legal NoGo moves by brute force: place the stone, flood-fill every group, check."""
    board = [int(v) for v in board]
    my = 1 if color == 0 else -1
    out = np.zeros(size * size, bool)
    for p in range(size * size):
        if board[p] != 0:
            continue
        b = list(board)
        b[p] = my
        ok = len(_group(b, p, size)[1]) > 0
        r, c = divmod(p, size)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < size and 0 <= cc < size and b[rr * size + cc] == -my:
                if not _group(b, rr * size + cc, size)[1]:
                    ok = False  # would capture
        out[p] = ok
    return out


def reference_playout(size: int, rng: np.random.Generator, first_player: int = 0):
    """A random game with the reference rules.

    Returns ``(actions, masks, winner)``: the moves, the legal mask before each move (and one
    after the last, all False), and the winner's player id (the player who moved last).
    """
    board = [0] * (size * size)
    color, player = 0, first_player
    actions, masks = [], []
    while True:
        m = reference_legal_mask(board, color, size)
        masks.append(m)
        if not m.any():
            return actions, masks, 1 - player
        a = int(rng.choice(np.flatnonzero(m)))
        actions.append(a)
        board[a] = 1 if color == 0 else -1
        color, player = 1 - color, 1 - player
