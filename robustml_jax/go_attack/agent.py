"""AlphaZero-like agents for Go (pgx) and NoGo: network, MCTS (mctx), self-play training.

* :class:`Game` wraps pgx's Go or our :func:`make_nogo` with what the agent and the attack need
  (actions, null move, ownership).
* :class:`PVNet`: a Flax residual policy-value network with an ownership head. ``apply`` maps
  observations ``[B, S, S, C]`` to :class:`NetOutput` (policy logits ``[B, A]``, value ``[B]`` in
  [-1, 1] for the player to move, ownership ``[B, S*S]`` in [-1, 1], + = the player to move).
* :func:`search`: Gumbel MuZero search (``mctx.gumbel_muzero_policy``) over a batch of states,
  returning :class:`SearchOutput` (move, root value, per-child Q and visit counts).
* :func:`make_trainer`: batched, jitted self-play + training steps, data-parallel over devices
  with ``jax.sharding`` (the batch of games is split along the ``data`` axis).
* :func:`save_agent` / :func:`load_agent`: orbax checkpoints with a JSON description; loading for
  another game or board size raises a one-line ``ValueError``.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import mctx
import numpy as np
import optax
import pgx.go

from robustml_jax.core import sharding
from robustml_jax.core.checkpoint import Checkpointer
from robustml_jax.go_attack.nogo import make_nogo

__all__ = [
    "AgentSpec",
    "Game",
    "NetOutput",
    "PVNet",
    "SearchOutput",
    "TrainState",
    "evaluate_vs_random",
    "selfplay_targets",
    "wilson_interval",
    "load_agent",
    "make_game",
    "make_trainer",
    "ownership",
    "save_agent",
    "search",
]

GAMES = ("go", "nogo")


class Game:
    """One game on one board size: ``env`` (pgx-like), ``num_actions``, ``null_move``.

    Go: pgx ``go`` with ``num_actions = S*S + 1`` (the last is pass, also the null move).
    NoGo: :func:`make_nogo` with ``num_actions = S*S`` and the internal null move ``S*S``.
    """

    def __init__(
        self, name: str, size: int, *, history_length: int = 4, komi: float = 7.5, max_moves=0
    ):
        if name not in GAMES:
            raise ValueError(f"unknown game {name!r}; known: {', '.join(GAMES)}")
        if not isinstance(size, int) or not 5 <= size <= 19:
            raise ValueError(f"board size must be an int in [5, 19], got {size!r}")
        self.name, self.size, self.history_length, self.komi = name, size, history_length, komi
        self.num_points = size * size
        if name == "go":
            self.env = pgx.go.Go(
                size=size,
                komi=komi,
                history_length=history_length,
                max_terminal_steps=max_moves or None,  # Go games are scored after max_moves
            )
            self.num_actions = size * size + 1
        else:
            self.env = make_nogo(size, history_length)
            self.num_actions = size * size
        self.null_move = size * size

    def __repr__(self) -> str:
        return f"Game({self.name!r}, {self.size})"

    def init(self, key):
        return self.env.init(key)

    def init_black_first(self, key):
        """``init`` with player id 0 = black (records and attacks need a fixed order)."""
        s = self.env.init(key)
        order = jnp.array([0, 1], jnp.int32)
        if self.name == "go":
            return s.replace(current_player=jnp.int32(0), _player_order=order)
        return s.replace(current_player=jnp.int32(0), player_order=order)

    def step(self, state, action):
        """``env.step``; for NoGo the null move is allowed (the attack adds single stones)."""
        return self.env.step(state, action)

    def board(self, state) -> jax.Array:
        """Stones [.., S*S]: +1 black, -1 white, 0 empty."""
        if self.name == "go":
            return jnp.sign(state._x.board).astype(jnp.int32)
        return state.board

    def color(self, state) -> jax.Array:
        """Colour to move: 0 black, 1 white."""
        return state._x.color if self.name == "go" else state.color

    def history_boards(self, state) -> jax.Array:
        return state._x.board_history if self.name == "go" else state.board_history

    def agent_mask(self, state) -> jax.Array:
        """The moves the agent may choose [.., A]: the legal moves, except that in Go the agent
        passes only in reply to a pass (the game then ends and is scored) or when no other move
        is legal. pgx's observation has no pass plane, so a network cannot tell when passing is
        safe; unrestricted, self-play learnt to pass as white (a pass in reply to black's pass
        wins on komi) and the agent then passed a fifth of its moves against a random player,
        losing ~90% of games. The environment's rules are unchanged (opponents may pass)."""
        m = state.legal_action_mask
        if self.name != "go":
            return m
        allow = (state._x.consecutive_pass_count > 0) | ~m[..., :-1].any(-1)
        return m.at[..., -1].set(m[..., -1] & allow)


def make_game(name: str, size: int, **kw) -> Game:
    return Game(name, size, **kw)


def ownership(game: Game, board: jax.Array) -> jax.Array:
    """Final ownership [S*S] (+1 black, -1 white, 0 neutral) of a board [S*S] (area rules for
    Go: stones plus empty regions reached by one colour only; NoGo: the stones)."""
    if game.name == "nogo":
        return board.astype(jnp.float32)
    from robustml_jax.go_attack.nogo import _adjacency

    adj = _adjacency(game.size)
    idx, valid = jnp.asarray(adj.idx), jnp.asarray(adj.valid)
    empty = board == 0

    def reach(colour):
        r0 = board == colour

        def body(c):
            r, _ = c
            nb = (jnp.append(r, False)[idx] & valid).any(-1)
            new = r | (empty & nb)
            return new, jnp.any(new != r)

        return jax.lax.while_loop(lambda c: c[1], body, (r0, jnp.bool_(True)))[0]

    rb, rw = reach(1), reach(-1)
    own = jnp.where(board != 0, board, jnp.where(rb & ~rw, 1, jnp.where(rw & ~rb, -1, 0)))
    return own.astype(jnp.float32)


# ---------------------------------------------------------------- network


class NetOutput(NamedTuple):
    logits: jax.Array  # [B, A]
    value: jax.Array  # [B], for the player to move
    ownership: jax.Array  # [B, S*S], + = the player to move


class _Block(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(nn.LayerNorm()(nn.Conv(self.channels, (3, 3))(x)))
        y = nn.LayerNorm()(nn.Conv(self.channels, (3, 3))(y))
        return nn.relu(x + y)


class PVNet(nn.Module):
    """Residual policy-value network with an ownership head (AlphaZero / KataGo style).

    ``pooled_heads=False``: AlphaZero's heads (1x1 convolutions with 2 / 1 channels and a ReLU).
    Without batch norm these can die: the 7x7 NoGo agent's 1-channel value convolution went
    inactive on >99% of points within 40 iterations (constant value, value loss 1.0, the search
    then had no signal). ``pooled_heads=True``: policy logits from a linear 1x1 convolution
    (pass from the mean-pooled trunk), value from the mean- and max-pooled trunk through a SiLU
    layer (KataGo-style global pooling); nothing in them can die.
    """

    num_actions: int
    channels: int = 32
    blocks: int = 4
    pooled_heads: bool = False

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)
        x = nn.relu(nn.LayerNorm()(nn.Conv(self.channels, (3, 3))(x)))
        for _ in range(self.blocks):
            x = _Block(self.channels)(x)
        b = x.shape[0]
        if self.pooled_heads:
            pooled = jnp.concatenate([x.mean((1, 2)), x.max((1, 2))], -1)
            logits = nn.Conv(1, (1, 1), name="policy_conv")(x).reshape(b, -1)
            if self.num_actions > logits.shape[1]:  # Go: the pass logit
                logits = jnp.concatenate([logits, nn.Dense(1, name="pass")(pooled)], -1)
            h = nn.silu(nn.Dense(self.channels, name="value_hidden")(pooled))
            v = jnp.tanh(nn.Dense(1, name="value_out")(h))[:, 0]
            own = jnp.tanh(nn.Conv(1, (1, 1), name="ownership")(x)).reshape(b, -1)
            return NetOutput(logits, v, own)
        p = nn.relu(nn.Conv(2, (1, 1))(x)).reshape(b, -1)
        logits = nn.Dense(self.num_actions)(p)
        v = nn.relu(nn.Conv(1, (1, 1))(x)).reshape(b, -1)
        v = jnp.tanh(nn.Dense(1)(nn.relu(nn.Dense(self.channels)(v))))[:, 0]
        own = jnp.tanh(nn.Conv(1, (1, 1))(x)).reshape(b, -1)
        return NetOutput(logits, v, own)


class AgentSpec(NamedTuple):
    """What a checkpoint is for: game, board size, history planes, network shape."""

    game: str
    size: int
    history_length: int = 4
    channels: int = 32
    blocks: int = 4
    komi: float = 7.5
    max_moves: int = 0  # Go: score the game after this many moves (0 = pgx's 2*S*S)
    pooled_heads: bool = False  # PVNet's pooled (cannot-die) heads

    def make_game(self) -> Game:
        return Game(
            self.game,
            self.size,
            history_length=self.history_length,
            komi=self.komi,
            max_moves=self.max_moves,
        )

    def make_net(self) -> PVNet:
        n = self.size * self.size + (1 if self.game == "go" else 0)
        return PVNet(n, self.channels, self.blocks, self.pooled_heads)


def net_apply(net: PVNet, params, obs) -> NetOutput:
    return net.apply(params, obs)


def _masked_logits(logits, mask):
    logits = logits - logits.max(-1, keepdims=True)
    return jnp.where(mask, logits, jnp.finfo(logits.dtype).min)


# ---------------------------------------------------------------- search


class SearchOutput(NamedTuple):
    action: jax.Array  # [B] the searched move
    value: jax.Array  # [B] root value in [-1, 1] (player to move)
    qvalues: jax.Array  # [B, A] per-child Q (player to move), completed for unvisited children
    visits: jax.Array  # [B, A] visit counts
    action_weights: jax.Array  # [B, A] improved policy (training target)


def _recurrent_fn(game: Game, net: PVNet):
    def fn(params, rng, action, state):
        del rng
        mover = state.current_player
        state = jax.vmap(game.step)(state, action)
        out = net.apply(params, state.observation)
        reward = jnp.take_along_axis(state.rewards, mover[:, None], 1)[:, 0]
        value = jnp.where(state.terminated, 0.0, out.value)
        discount = jnp.where(state.terminated, 0.0, -1.0)
        logits = _masked_logits(out.logits, game.agent_mask(state))
        return mctx.RecurrentFnOutput(
            reward=reward, discount=discount, prior_logits=logits, value=value
        ), state

    return fn


def search(
    game: Game,
    net: PVNet,
    params,
    key: jax.Array,
    state,
    *,
    num_simulations: int,
    gumbel_scale: float = 1.0,
) -> SearchOutput:
    """Gumbel MuZero search from a batch of states (leading axis B). ``gumbel_scale=0`` makes it
    deterministic (the attack's targets); the examiner uses a positive scale and a fresh key."""
    out = net.apply(params, state.observation)
    mask = game.agent_mask(state)
    root = mctx.RootFnOutput(
        prior_logits=_masked_logits(out.logits, mask),
        value=out.value,
        embedding=state,
    )
    po = mctx.gumbel_muzero_policy(
        params,
        key,
        root,
        _recurrent_fn(game, net),
        num_simulations=num_simulations,
        invalid_actions=~mask,
        max_num_considered_actions=min(16, game.num_actions),
        gumbel_scale=gumbel_scale,
    )
    summ = po.search_tree.summary()
    return SearchOutput(po.action, summ.value, summ.qvalues, summ.visit_counts, po.action_weights)


# ---------------------------------------------------------------- self-play training


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array


class _Traj(NamedTuple):
    obs: jax.Array
    mask: jax.Array
    policy: jax.Array
    reward: jax.Array
    terminated: jax.Array
    color_sign: jax.Array
    final_own: jax.Array


def selfplay_targets(reward, terminated, final_own, color_sign):
    """Value and ownership targets of self-play positions (time-major, auto-reset games).

    Args: ``reward`` [T, B] (the mover's reward for the move at t), ``terminated`` [T, B] (the
    move at t ended the game), ``final_own`` [T, B, N] (ownership of the board after the move at
    t, +1 black), ``color_sign`` [T, B] (+1 when black moved at t).
    Returns ``(value [T, B], ownership [T, B, N], valid [T, B])``: the value for the player to
    move at t (the final reward, sign flipped each ply back from the end), the final ownership
    with + = that player, and whether the position's game finished within the trajectory.
    """

    def back(carry, t):
        v_next, own_next, seen = carry
        r, term, fown, sign = t
        v = jnp.where(term, r, r - v_next)
        own = jnp.where(term[:, None], fown, own_next)
        seen = seen | term
        return (v, own, seen), (v, own * sign[:, None], seen)

    b, n = reward.shape[1], final_own.shape[-1]
    init = (jnp.zeros(b), jnp.zeros((b, n)), jnp.zeros(b, bool))
    _, out = jax.lax.scan(back, init, (reward, terminated, final_own, color_sign), reverse=True)
    return out


def make_trainer(
    spec: AgentSpec,
    *,
    num_games: int,
    max_steps: int,
    num_simulations: int,
    learning_rate: float = 1e-3,
    train_batch: int = 256,
    own_weight: float = 0.5,
    mesh=None,
    epochs: int = 1,
):
    """Returns ``(init_fn(key) -> TrainState, iterate(ts, key) -> (ts, metrics))``.

    One iteration: ``num_games`` parallel self-play games (auto-reset) for ``max_steps`` moves
    with ``num_simulations`` Gumbel MuZero simulations per move, value targets from the games'
    outcomes, ownership targets from the final boards, then ``epochs`` passes of SGD (Adam) over
    the completed positions in minibatches of ``train_batch``. Both are jitted; with a mesh the
    games are sharded over its ``data`` axis (``num_games`` must divide evenly).
    """
    game, net = spec.make_game(), spec.make_net()
    tx = optax.adamw(learning_rate, weight_decay=1e-4)
    mesh = mesh if mesh is not None else sharding.data_mesh()
    ndev = mesh.devices.size
    if num_games % ndev:
        raise ValueError(f"num_games={num_games} must be a multiple of the {ndev} devices")

    def init_fn(key):
        s = game.init(key)
        params = net.init(key, s.observation[None])
        return TrainState(params, tx.init(params), jnp.int32(0))

    def selfplay(params, key):
        k0, key = jax.random.split(key)
        state = jax.vmap(game.init)(jax.random.split(k0, num_games))

        def body(state, k):
            k1, k2 = jax.random.split(k)
            so = search(game, net, params, k1, state, num_simulations=num_simulations)
            color = game.color(state)
            nxt = jax.vmap(game.step)(state, so.action)
            reward = jnp.take_along_axis(nxt.rewards, state.current_player[:, None], 1)[:, 0]
            own = jax.vmap(lambda b: ownership(game, b))(game.board(nxt))
            fresh = jax.vmap(game.init)(jax.random.split(k2, num_games))
            nxt2 = jax.tree.map(
                lambda a, b: jnp.where(nxt.terminated.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                fresh,
                nxt,
            )
            t = _Traj(
                state.observation,
                game.agent_mask(state),
                so.action_weights,
                reward,
                nxt.terminated,
                jnp.where(color == 0, 1.0, -1.0),
                own,
            )
            return nxt2, t

        _, traj = jax.lax.scan(body, state, jax.random.split(key, max_steps))
        return traj

    def loss_fn(params, obs, mask, pol, v, own, w):
        out = net.apply(params, obs)
        logits = _masked_logits(out.logits, mask)
        pl = optax.softmax_cross_entropy(logits, pol)
        vl = (out.value - v) ** 2
        ol = ((out.ownership - own) ** 2).mean(-1)
        # the policy target exists for every position; value and ownership only where the
        # game finished within the iteration
        nw = jnp.maximum(w.sum(), 1)
        tot = pl.mean() + ((vl + own_weight * ol) * w).sum() / nw
        return tot, {"policy_loss": pl.mean(), "value_loss": (vl * w).sum() / nw}

    @jax.jit
    def iterate(ts: TrainState, key):
        k1, k2 = jax.random.split(key)
        traj = selfplay(ts.params, k1)
        traj = jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(
                a, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
            ),
            traj,
        )
        v, own, valid = selfplay_targets(
            traj.reward, traj.terminated, traj.final_own, traj.color_sign
        )
        flat = lambda a: a.reshape((-1,) + a.shape[2:])
        obs, mask, pol = flat(traj.obs), flat(traj.mask), flat(traj.policy)
        v, own, w = flat(v), flat(own), flat(valid).astype(jnp.float32)
        n = obs.shape[0]
        nb = max(n // train_batch, 1)
        perm = jnp.concatenate(
            [
                jax.random.permutation(jax.random.fold_in(k2, e), n)[: nb * train_batch]
                for e in range(epochs)
            ]
        ).reshape(epochs * nb, -1)

        def sgd(carry, idx):
            params, opt = carry
            (_, m), g = jax.value_and_grad(loss_fn, has_aux=True)(
                params, obs[idx], mask[idx], pol[idx], v[idx], own[idx], w[idx]
            )
            upd, opt = tx.update(g, opt, params)
            return (optax.apply_updates(params, upd), opt), m

        (params, opt), ms = jax.lax.scan(sgd, (ts.params, ts.opt_state), perm)
        metrics = jax.tree.map(jnp.mean, ms)
        metrics["games_finished"] = traj.terminated.sum()
        return TrainState(params, opt, ts.step + 1), metrics

    return init_fn, iterate


# ---------------------------------------------------------------- checkpoints


def save_agent(directory, spec: AgentSpec, ts: TrainState, *, step: int) -> None:
    """Saves the train state with orbax (``directory/ckpt``) and ``directory/agent.json``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agent.json").write_text(json.dumps(spec._asdict()))
    ck = Checkpointer(directory / "ckpt", max_to_keep=2)
    ck.save(step, {"params": ts.params, "opt_state": ts.opt_state, "step": ts.step}, force=True)
    ck.close()


def read_spec(directory) -> AgentSpec:
    p = pathlib.Path(directory) / "agent.json"
    if not p.is_file():
        raise FileNotFoundError(f"no agent checkpoint in {directory} (agent.json missing)")
    return AgentSpec(**json.loads(p.read_text()))


def load_agent(directory, *, game: str | None = None, size: int | None = None, like=None):
    """Loads ``(spec, TrainState)``; ``game``/``size`` are checked against the checkpoint.

    Raises:
      ValueError: the checkpoint is for another game or board size.
    """
    spec = read_spec(directory)
    if game is not None and spec.game != game:
        raise ValueError(f"checkpoint {directory} is a {spec.game} agent, not {game}")
    if size is not None and spec.size != size:
        raise ValueError(
            f"checkpoint {directory} is for a {spec.size}x{spec.size} board, not {size}x{size}"
        )
    if like is None:
        init_fn, _ = _init_only(spec)
        like = init_fn(jax.random.key(0))
    ck = Checkpointer(pathlib.Path(directory) / "ckpt")
    tree = ck.restore({"params": like.params, "opt_state": like.opt_state, "step": like.step})
    ck.close()
    return spec, TrainState(tree["params"], tree["opt_state"], tree["step"])


@functools.lru_cache(maxsize=8)
def _init_only(spec: AgentSpec):
    return make_trainer(
        spec, num_games=1, max_steps=1, num_simulations=2, mesh=sharding.data_mesh(1)
    )


def check_board(spec: AgentSpec, size: int) -> None:
    """One-line error when a position's board size is not the agent's."""
    if size != spec.size:
        raise ValueError(
            f"the agent was trained for {spec.size}x{spec.size} {spec.game}, "
            f"got a {size}x{size} board"
        )


# ---------------------------------------------------------------- evaluation


def play_vs_random(
    spec: AgentSpec, params, key, *, num_games: int, num_simulations: int = 0, max_steps=None
) -> np.ndarray:
    """Plays ``num_games`` games agent vs uniformly random legal moves, the agent as player 0
    (black in half of the games, pgx's random order); ``num_simulations=0`` = the PV-NN (argmax
    of the masked policy). Returns the agent's rewards [num_games] (+1 win, -1 loss, 0 unfinished).
    """
    game, net = spec.make_game(), spec.make_net()
    max_steps = max_steps or 2 * game.num_points + 10

    @jax.jit
    def run(key):
        k0, key = jax.random.split(key)
        state = jax.vmap(game.init)(jax.random.split(k0, num_games))

        def body(c, k):
            state, total = c
            k1, k2 = jax.random.split(k)
            if num_simulations:
                a_agent = search(
                    game, net, params, k1, state, num_simulations=num_simulations, gumbel_scale=0.0
                ).action
            else:
                out = net.apply(params, state.observation)
                a_agent = jnp.argmax(_masked_logits(out.logits, game.agent_mask(state)), -1)
            logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
            a_rand = jax.random.categorical(k2, logits)
            a = jnp.where(state.current_player == 0, a_agent, a_rand)
            nxt = jax.vmap(game.step)(state, a)
            total = total + nxt.rewards[:, 0]
            return (nxt, total), None

        (state, total), _ = jax.lax.scan(
            body, (state, jnp.zeros(num_games)), jax.random.split(key, max_steps)
        )
        return total

    return np.asarray(run(key))


def wilson_interval(wins: int, games: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a win rate ``wins / games``."""
    if games <= 0:
        return (0.0, 1.0)
    p = wins / games
    d = 1 + z * z / games
    c = (p + z * z / (2 * games)) / d
    h = z * np.sqrt(p * (1 - p) / games + z * z / (4 * games * games)) / d
    return (float(max(c - h, 0.0)), float(min(c + h, 1.0)))


def evaluate_vs_random(spec, params, key, *, num_games=200, num_simulations=0) -> dict:
    """Win record vs a uniformly random player with the win rate's 95% Wilson interval."""
    r = play_vs_random(spec, params, key, num_games=num_games, num_simulations=num_simulations)
    wins = int((r > 0).sum())
    return {
        "games": int(len(r)),
        "wins": wins,
        "losses": int((r < 0).sum()),
        "win_rate": float((r > 0).mean()),
        "win_rate_ci95": wilson_interval(wins, int(len(r))),
    }


def train_agent(
    spec: AgentSpec,
    directory,
    *,
    iterations: int,
    num_games: int,
    max_steps: int,
    num_simulations: int,
    seed: int = 0,
    learning_rate: float = 1e-3,
    train_batch: int = 256,
    time_budget_s: float | None = None,
    save_every: int = 5,
    log=print,
    epochs: int = 1,
) -> tuple[TrainState, dict]:
    """Self-play training, resumable: checkpoints into ``directory`` every ``save_every``
    iterations (and at the end / when ``time_budget_s`` runs out); a re-run continues from the
    latest checkpoint. Returns the final state and ``{"iterations", "seconds", "history"}``."""
    import time

    directory = pathlib.Path(directory)
    init_fn, iterate = make_trainer(
        spec,
        num_games=num_games,
        max_steps=max_steps,
        num_simulations=num_simulations,
        learning_rate=learning_rate,
        train_batch=train_batch,
        epochs=epochs,
    )
    ts = init_fn(jax.random.key(seed))
    hist_path = directory / "history.json"
    history = json.loads(hist_path.read_text()) if hist_path.is_file() else []
    if (directory / "agent.json").is_file():
        _, ts = load_agent(directory, game=spec.game, size=spec.size, like=ts)
        log(f"resumed {spec.game} {spec.size}x{spec.size} at iteration {int(ts.step)}")
    t0 = time.time()
    start = int(ts.step)
    for i in range(start, iterations):
        ts, m = iterate(ts, jax.random.fold_in(jax.random.key(seed + 1), i))
        m = {k: float(v) for k, v in m.items()}
        m.update(iteration=i + 1, seconds=time.time() - t0)
        history.append(m)
        log(f"{spec.game}{spec.size} it {i + 1}/{iterations} {m}")
        last = i + 1 == iterations or (
            time_budget_s is not None and time.time() - t0 > time_budget_s
        )
        if (i + 1) % save_every == 0 or last:
            save_agent(directory, spec, ts, step=i + 1)
            tmp = hist_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(history))
            tmp.replace(hist_path)
        if last:
            break
    return ts, {"iterations": int(ts.step), "seconds": time.time() - t0, "history": history}
