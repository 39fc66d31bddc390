"""The GoAttack search for adversarial states (the paper's code definitions, PAPERS.md §3).

Values are win rates of the player to move, ``w = (v + 1) / 2``. The *examiner* is a strong
search (``examiner_sims`` Gumbel MuZero simulations, fresh noise); the *target* is the PV-NN
(``sims = 0``: argmax of the policy, the network's value) or a deterministic MCTS with ``sims``
simulations (``gumbel_scale = 0``).

For a natural state ``s`` (the first ``k`` moves of a game) and a perturbation of one or two
stones, ``s'`` is built by replaying moves: "appended" adds ``[a, null]`` (the mover's stone),
``[null, a]`` (the opponent's) or ``[a_mover, a_opponent]`` as the latest moves (the paper's
code); "inserted" adds them before the network's history window (``history_length`` plies
earlier), the public concern about the paper. ``null`` is pass (Go) or NoGo's null move.

Definitions (``V = V_ex(s)``, ``pi = pi_ex(s)``, ``T(s, a)`` = state after ``a``):

* isDiff(v1, v2): False if both > 0.8, both < 0.2, or ``|v1 - v2| < eta_eq``.
* meaningless: not isDiff(V_ex(T(s', pi)), V_ex(T(s, pi))); ``pi`` must stay legal on ``s'``.
* examiner confident: ``V >= eta_adv + 0.01`` (policy) / ``max(V, 1-V) >= eta_adv + 0.01``
  (value), on ``s`` and again with ``1 - V_ex(T(s', pi))``.
* target initially correct: value: ``|V_t(s) - V| <= eta_correct``; policy:
  ``|Q_ex(s, a_t(s)) - V| <= eta_correct``.
* policy success: the target's move ``a'`` on ``s'``, examiner ``Q = 1 - V_ex(T(s', a'))``,
  ``V - Q > eta_adv``; moves with ``V - Q < eta_adv - eta_correct`` join the known-good set.
* value success: ``|V_t(s') - V*| > eta_adv``, ``V* = max(1 - V_ex(T(s', pi)), V_ex(s'))``.

Search-space reduction (``reduce=True``): ownership filter ``|own_ex(s)| > 0.8`` (Go only);
a cheap screen of every candidate first (the examiner NN's meaningless check and one batched
target call: policy passes if ``N_ex(s, a') < 5`` or ``V - Q_ex(s, a') > eta_adv - eta_eq``,
value passes if ``|V_t(s') - V| > eta_adv - eta_eq``); two-stone candidates are products of the
cached meaningless single stones; states scanned from the end back to
``max(min_ply, len // 10)``; all one-stone candidates of all states before any two-stone one;
stop at the first success per game. ``reduce=False`` is brute force: every legal candidate gets
the examiner's searches. Each found example is re-verified by a fresh examiner search with a
different seed. Examiner evaluations (searched states) are counted.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.go_attack.agent import AgentSpec, Game, _masked_logits, search

__all__ = ["AttackConfig", "Attacker", "is_diff", "reverify", "selfplay_games"]


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    attack: str = "policy"  # "policy" | "value"
    stones: int = 2  # 1 or 2 (2 runs the one-stone pass first)
    target_sims: int = 0  # 0 = PV-NN
    placement: str = "appended"  # "appended" | "inserted"
    eta_adv: float = 0.7
    eta_eq: float = 0.1
    eta_correct: float = 0.2
    own_threshold: float = 0.8
    reduce: bool = True
    min_ply: int = 4
    max_pairs: int = 256
    max_verify: int = 64  # survivors searched per state (reduced run)

    def __post_init__(self):
        if self.attack not in ("policy", "value"):
            raise ValueError(f"attack must be 'policy' or 'value', got {self.attack!r}")
        if self.stones not in (1, 2):
            raise ValueError(f"stones must be 1 or 2, got {self.stones!r}")
        if self.placement not in ("appended", "inserted"):
            raise ValueError(f"placement must be 'appended' or 'inserted', got {self.placement!r}")
        if self.target_sims < 0:
            raise ValueError(f"target_sims must be >= 0, got {self.target_sims}")
        if not 0 < self.eta_adv < 1:
            raise ValueError(f"eta_adv must be in (0, 1), got {self.eta_adv}")


def is_diff(v1, v2, eta_eq: float = 0.1):
    """The paper's isDiff on win rates (vectorised)."""
    v1, v2 = np.asarray(v1), np.asarray(v2)
    same = ((v1 > 0.8) & (v2 > 0.8)) | ((v1 < 0.2) & (v2 < 0.2)) | (np.abs(v1 - v2) < eta_eq)
    return ~same


def _bcast(state, b):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (b,) + a.shape), state)


class Attacker:
    """Runs attacks for one game with one examiner/target network (jitted, batched)."""

    def __init__(
        self,
        spec: AgentSpec,
        params,
        *,
        examiner_sims: int,
        target_params=None,
        pad: int = 128,
        value_scale: float = 1.0,
    ):
        if value_scale < 1.0:
            raise ValueError(f"value_scale must be >= 1, got {value_scale}")
        self.spec, self.game, self.net = spec, spec.make_game(), spec.make_net()
        self.value_scale = float(value_scale)
        self.params = params
        self.target_params = params if target_params is None else target_params
        self.examiner_sims = examiner_sims
        self.pad = pad  # candidate batches are padded to a multiple (one compile per size)
        self.mcts_evals = 0  # examiner searches (states)
        self.nn_evals = 0  # examiner network-only evaluations (states)
        g = self.game

        def replay(actions):  # [T] with -1 padding -> (state, legal)
            s0 = g.init_black_first(jax.random.key(0))

            def body(c, a):
                s, ok = c
                play = a >= 0
                legal = jnp.append(s.legal_action_mask, True)[jnp.clip(a, 0, g.null_move)]
                legal = legal & ~s.terminated
                if g.name == "go":
                    legal = legal | (play & (a == g.null_move) & ~s.terminated)
                s2 = g.step(s, jnp.maximum(a, 0))
                s = jax.tree.map(lambda u, v: jnp.where(play, v, u), s, s2)
                return (s, ok & (~play | legal)), None

            (s, ok), _ = jax.lax.scan(body, (s0, jnp.bool_(True)), actions)
            if g.name == "go":
                # The null move that adds a single stone is a pass in pgx; it is the attacker's
                # device, not a game pass: without this reset the agent (which passes only in
                # reply to a pass) could answer it by passing and end the game, the artefact of
                # the first run's one example (NOTES.md). Natural states never end in a pass
                # (the agent's games end at the first pass reply), so they are unchanged.
                s = s.replace(_x=s._x._replace(consecutive_pass_count=jnp.int32(0)))
            return s, ok & ~s.terminated

        self._replay = jax.jit(jax.vmap(replay))

        def examine(params, key, states):
            so = search(g, self.net, params, key, states, num_simulations=examiner_sims)
            term_w = (
                jnp.take_along_axis(states.rewards, states.current_player[:, None], 1)[:, 0] + 1
            ) / 2
            w = jnp.where(states.terminated, term_w, (so.value + 1) / 2)
            return w, so.action, (so.qvalues + 1) / 2, so.visits

        self._examine = jax.jit(examine)

        def nn(params, states):
            out = self.net.apply(params, states.observation)
            term_w = (
                jnp.take_along_axis(states.rewards, states.current_player[:, None], 1)[:, 0] + 1
            ) / 2
            w = jnp.where(states.terminated, term_w, (out.value + 1) / 2)
            return (
                w,
                out.ownership,
                jnp.argmax(_masked_logits(out.logits, g.agent_mask(states)), -1),
            )

        self._nn = jax.jit(nn)

        def step_all(states, actions):
            return jax.vmap(g.step)(states, actions)

        self._step = jax.jit(step_all)

    # ------------------------------------------------------------------ batched helpers

    def _padded(self, seqs: list[list[int]]):
        b = len(seqs)
        # two fixed batch sizes (8, multiples of ``pad``): few compilations per function
        bp = 8 if b <= 8 else -(-b // self.pad) * self.pad
        t = max(1, max(len(s) for s in seqs))
        t = -(-t // 16) * 16
        arr = np.full((bp, t), -1, np.int32)
        for i, s in enumerate(seqs):
            arr[i, : len(s)] = s
        return jnp.asarray(arr), b

    def states(self, seqs: list[list[int]]):
        """Replays move lists (null = ``game.null_move``); returns (states, valid [B])."""
        arr, b = self._padded(seqs)
        s, ok = self._replay(arr)
        return s, np.asarray(ok)[:b], b

    def scale(self, w):
        """Win rates stretched about 1/2 by ``value_scale`` (clipped to [0, 1]); the identity
        at ``value_scale = 1`` (the paper). Every win rate the attack compares (examiner V, Q,
        NN values and the target's value) goes through it, so a scale ``c`` is the same as the
        paper's thresholds (eta_adv, eta_eq, eta_correct, isDiff's 0.2/0.8) shrunk by ``1/c``
        towards 1/2, for agents whose values are compressed (NOTES.md)."""
        w = np.asarray(w)
        if self.value_scale == 1.0:
            return w
        return np.clip(0.5 + self.value_scale * (w - 0.5), 0.0, 1.0)

    def examiner_search(self, states, key, b):
        self.mcts_evals += b
        w, a, q, n = self._examine(self.params, key, states)
        return (
            self.scale(np.asarray(w)[:b]),
            np.asarray(a)[:b],
            self.scale(np.asarray(q)[:b]),
            np.asarray(n)[:b],
        )

    def examiner_nn(self, states, b):
        self.nn_evals += b
        w, own, _ = self._nn(self.params, states)
        return self.scale(np.asarray(w)[:b]), np.asarray(own)[:b]

    def target(self, states, b, sims):
        """Target move and win rate on a batch of states."""
        if sims == 0:
            w, _, a = self._nn(self.target_params, states)
            return np.asarray(a)[:b], self.scale(np.asarray(w)[:b])
        w, a = _target_search(self.game, self.net, sims)(self.target_params, states)
        return np.asarray(a)[:b], self.scale(np.asarray(w)[:b])

    def after(self, states, actions, b):
        arr = np.zeros(states.legal_action_mask.shape[0], np.int32)
        arr[:b] = actions
        legal = np.asarray(
            jnp.append(states.legal_action_mask, jnp.ones_like(states.legal_action_mask[:, :1]), 1)
        )[np.arange(len(arr)), np.minimum(arr, self.game.null_move)][:b]
        return self._step(states, jnp.asarray(arr)), legal

    # ------------------------------------------------------------------ perturbations

    def perturbed_seq(self, moves: list[int], k: int, pert: list[int], placement: str):
        h = self.game.history_length
        if placement == "appended" or k < h:
            return list(moves[:k]) + pert
        return list(moves[: k - h]) + pert + list(moves[k - h : k])

    # ------------------------------------------------------------------ per-state cache

    def state_info(self, moves: list[int], ks: list[int], key) -> dict:
        """Examiner statistics of natural states (one batched call each)."""
        seqs = [list(moves[:k]) for k in ks]
        st, ok, b = self.states(seqs)
        k1, k2 = jax.random.split(key)
        w, pi, q, n = self.examiner_search(st, k1, b)
        wnn, own = self.examiner_nn(st, b)
        after, legal = self.after(st, pi, b)
        w_after, _, _, _ = self.examiner_search(after, k2, b)
        wnn_after, _ = self.examiner_nn(after, b)
        return dict(
            ks=ks,
            ok=ok,
            V=w,
            pi=pi,
            Q=q,
            N=n,
            own=own,
            V_after=w_after,
            Vnn_after=wnn_after,
            board=np.asarray(self.game.board(st))[:b],
            color=np.asarray(self.game.color(st))[:b],
        )


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


@functools.lru_cache(maxsize=32)
def _target_search(game: Game, net, sims: int):
    def fn(params, states):
        so = search(
            game, net, params, jax.random.key(0), states, num_simulations=sims, gumbel_scale=0.0
        )
        return (so.value + 1) / 2, so.action

    return jax.jit(fn)


def attack_game(
    att: Attacker,
    moves: list[int],
    cfg: AttackConfig,
    key,
    info: dict | None = None,
    targets_cache: dict | None = None,
) -> dict:
    """Attacks one game (scan from the end, one stone over all states, then two stones).

    Returns a dict: ``success_1``/``success_2`` (found with <= 1 / <= 2 stones, verified),
    ``found`` (before re-verification), the example (ply, perturbation, target move, values) and
    the examiner evaluations spent.
    """
    g = att.game
    null = g.null_move
    n_pts = g.num_points
    L = len(moves)
    lo = max(cfg.min_ply, L // 10)
    ks = list(range(L - 1, lo - 1, -1))
    mcts0, nn0 = att.mcts_evals, att.nn_evals
    if info is None:
        info = att.state_info(moves, ks, jax.random.fold_in(key, 1))
    res: dict[str, Any] = {
        "success_1": False,
        "success_2": False,
        "found": 0,
        "unverified": 0,
        "states_scanned": 0,
        "states_precond": 0,
        "example": None,
        # how many states / candidates pass each filter (the diagnosis in NOTES.md)
        "funnel": dict.fromkeys(_FUNNEL, 0),
        # the largest success margin seen (policy: V - Q of the searched candidates; value:
        # |V_t(s') - V| over all legal candidates): how far the attack is from eta_adv
        "max_gap": -1.0,
    }
    fun = res["funnel"]
    eta, eq, corr = cfg.eta_adv, cfg.eta_eq, cfg.eta_correct
    singles: dict[int, tuple[list, list]] = {}
    passed: set[int] = set()
    good: dict[int, set] = {}

    # target on the natural states (cached across attack types by the caller)
    tkey = ("natural", cfg.target_sims)
    if targets_cache is not None and tkey in targets_cache:
        ta, tw = targets_cache[tkey]
    else:
        st, _, b = att.states([list(moves[:k]) for k in ks])
        ta, tw = att.target(st, b, cfg.target_sims)
        if targets_cache is not None:
            targets_cache[tkey] = (ta, tw)

    def precondition(i) -> bool:
        if not info["ok"][i]:
            return False
        fun["states_legal"] += 1
        V = info["V"][i]
        conf = V >= eta + 0.01 if cfg.attack == "policy" else max(V, 1 - V) >= eta + 0.01
        if not conf:
            return False
        fun["states_examiner_confident"] += 1
        if cfg.attack == "value":
            return abs(tw[i] - V) <= corr
        a = int(ta[i])
        if info["N"][i][a] > 0:
            q = info["Q"][i][a]
        else:  # the examiner searches the target's move
            st, _, b = att.states([list(moves[: ks[i]]) + [a]])
            w, _, _, _ = att.examiner_search(st, jax.random.fold_in(key, 7 + i), b)
            q = 1 - w[0]
        return abs(q - V) <= corr

    def try_candidates(i, perts, phase) -> bool:
        k = ks[i]
        V, pi = info["V"][i], int(info["pi"][i])
        seqs = [att.perturbed_seq(moves, k, p, cfg.placement) for p in perts]
        st, ok, b = att.states(seqs)
        fun["cand_total"] += b
        after, legal_pi = att.after(st, np.full(b, pi), b)
        ok = ok & legal_pi
        fun["cand_legal"] += int(ok.sum())
        if cfg.reduce:
            wnn_after, _ = att.examiner_nn(after, b)
            ok = ok & ~is_diff(wnn_after, info["Vnn_after"][i], eq)
            fun["cand_nn_meaningless"] += int(ok.sum())
            if phase == 1:  # cache the meaningless singles per colour
                mover = [p[0] for p, o in zip(perts, ok, strict=False) if o and p[1] == null]
                opp = [p[1] for p, o in zip(perts, ok, strict=False) if o and p[0] == null]
                singles[i] = (mover, opp)
        a_t, w_t = att.target(st, b, cfg.target_sims)
        if cfg.reduce:
            if cfg.attack == "policy":
                nvis = info["N"][i][np.minimum(a_t, g.num_actions - 1)]
                qv = info["Q"][i][np.minimum(a_t, g.num_actions - 1)]
                screen = (nvis < 5) | (V - qv > eta - eq)
                screen &= np.array([int(a) not in good.get(i, set()) for a in a_t])
            else:
                screen = np.abs(w_t - V) > eta - eq
                if ok.any():
                    res["max_gap"] = max(res["max_gap"], float(np.abs(w_t - V)[ok].max()))
            ok = ok & screen
            fun["cand_screen"] += int(ok.sum())
        idx = np.flatnonzero(ok)
        if cfg.reduce:
            idx = idx[: cfg.max_verify]
        if len(idx) == 0:
            return False
        fun["cand_searched"] += len(idx)
        sub = [seqs[j] for j in idx]
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1000 * i + phase))
        found = _check(att, cfg, sub, idx, pi, V, a_t, w_t, info, i, k1, good, fun, res)
        for j in found:
            res["found"] += 1
            ok2 = _check(
                att,
                cfg,
                [seqs[j]],
                np.array([j]),
                pi,
                V,
                a_t,
                w_t,
                info,
                i,
                jax.random.fold_in(k2, 99),
                None,
            )
            if ok2:
                fun["verified"] += 1
                res["example"] = dict(
                    ply=k,
                    perturbation=[int(x) for x in perts[j]],
                    sequence=seqs[j],
                    target_move=int(a_t[j]),
                    target_w=float(w_t[j]),
                    examiner_V=float(V),
                    examiner_pi=pi,
                    placement=cfg.placement,
                    stones=phase,
                )
                return True
            res["unverified"] += 1
        return False

    for phase in (1, 2)[: cfg.stones]:
        for i, k in enumerate(ks):
            if phase == 1:
                res["states_scanned"] += 1
                if not precondition(i):
                    continue
                res["states_precond"] += 1
                passed.add(i)
                empty = np.flatnonzero(info["board"][i] == 0)
                if cfg.reduce and g.name == "go":
                    own = info["own"][i]  # the sign (whose) does not matter here
                    empty = empty[np.abs(own[empty]) > cfg.own_threshold]
                perts = [[int(p), null] for p in empty] + [[null, int(p)] for p in empty]
            else:
                if i not in passed:
                    continue
                if cfg.reduce:
                    if i not in singles:
                        continue
                    mover, opp = singles[i]
                else:
                    e = [int(p) for p in np.flatnonzero(info["board"][i] == 0)]
                    mover, opp = e, e
                perts = [[m, o] for m in mover for o in opp if m != o]
                if cfg.reduce and len(perts) > cfg.max_pairs:
                    rng = np.random.default_rng(int(k))
                    perts = [
                        perts[j]
                        for j in sorted(rng.choice(len(perts), cfg.max_pairs, replace=False))
                    ]
            if not perts:
                continue
            if try_candidates(i, perts, phase):
                res["success_1"] = phase == 1
                res["success_2"] = True
                res["mcts_evals"] = att.mcts_evals - mcts0
                res["nn_evals"] = att.nn_evals - nn0
                return res
    res["mcts_evals"] = att.mcts_evals - mcts0
    res["nn_evals"] = att.nn_evals - nn0
    del n_pts
    return res


_FUNNEL = (
    "states_legal",
    "states_examiner_confident",
    "cand_total",
    "cand_legal",
    "cand_nn_meaningless",
    "cand_screen",
    "cand_searched",
    "cand_meaningless",
    "cand_confident",
    "cand_success_criterion",
    "cand_success",
    "verified",
)


def _check(
    att, cfg, seqs, idx, pi, V, a_t, w_t, info, i, key, good, fun=None, res=None
) -> list[int]:
    """Examiner searches for candidates ``idx`` (meaningless, confident, success); returns the
    indices (into the candidate list) that succeed, in order."""
    eta, eq, corr = cfg.eta_adv, cfg.eta_eq, cfg.eta_correct
    st, ok, b = att.states(seqs)
    after, _ = att.after(st, np.full(b, pi), b)
    k1, k2 = jax.random.split(key)
    w_after, _, _, _ = att.examiner_search(after, k1, b)
    meaningless = ~is_diff(w_after, info["V_after"][i], eq)
    v2 = 1 - w_after
    conf = v2 >= eta + 0.01 if cfg.attack == "policy" else np.maximum(v2, 1 - v2) >= eta + 0.01
    if cfg.attack == "policy":
        moved, legal = att.after(st, a_t[idx], b)
        w_m, _, _, _ = att.examiner_search(moved, k2, b)
        q = np.where(legal, 1 - w_m, 0.0)  # an illegal target move counts as success
        success = V - q > eta
        if good is not None:
            good.setdefault(i, set()).update(
                int(a) for a, qq in zip(a_t[idx], q, strict=False) if V - qq < eta - corr
            )
    else:
        w_s, _, _, _ = att.examiner_search(st, k2, b)
        vstar = np.maximum(1 - w_after, w_s)
        success = np.abs(w_t[idx] - vstar) > eta
    keep = ok & meaningless & conf & success
    if res is not None and ok.any():
        gap = (V - q) if cfg.attack == "policy" else np.abs(w_t[idx] - vstar)
        res["max_gap"] = max(res["max_gap"], float(np.max(gap[ok])))
    if fun is not None:
        fun["cand_meaningless"] += int((ok & meaningless).sum())
        fun["cand_confident"] += int((ok & meaningless & conf).sum())
        fun["cand_success_criterion"] += int((ok & success).sum())
        fun["cand_success"] += int(keep.sum())
    return [int(j) for j, kk in zip(idx, keep, strict=False) if kk]


def reverify(
    att: Attacker, moves: list[int], example: dict, cfg: AttackConfig, key, repeats: int = 16
) -> dict:
    """Re-checks a found example's success criterion under ``repeats`` fresh examiner searches.

    The attack verifies each example once with a new seed; this measures how robust that verdict
    is to the examiner's search noise: every examiner value the criterion uses (value attack:
    ``V* = max(1 - V_ex(T(s', pi)), V_ex(s'))``; policy attack: ``V_ex(s)`` and the target
    move's ``Q``) is recomputed ``repeats`` times (independent Gumbel noise per batch row), the
    target's value / move kept as found. ``rate`` is the share of draws on which
    ``|V_t(s') - V*| > eta_adv`` (value) or ``V - Q > eta_adv`` (policy) holds: near 1 for a
    real example, near the false-alarm level for one produced by examiner noise.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2, got {repeats}")
    for field in ("ply", "sequence", "target_move", "target_w", "examiner_pi"):
        if field not in example:
            raise ValueError(f"example has no {field!r} field (an attack_game example dict)")
    r = int(repeats)
    eta = cfg.eta_adv
    stp, okp, _ = att.states([list(example["sequence"])] * r)
    if not okp.all():
        raise ValueError("the example's sequence does not replay legally")
    k1, k2 = jax.random.split(key)
    if cfg.attack == "value":
        after, _ = att.after(stp, np.full(r, int(example["examiner_pi"])), r)
        w_after = att.examiner_search(after, k1, r)[0]
        w_s = att.examiner_search(stp, k2, r)[0]
        ref = np.maximum(1 - w_after, w_s)  # V* per draw
        ok = np.abs(float(example["target_w"]) - ref) > eta
    else:
        nat, _, _ = att.states([list(moves[: int(example["ply"])])] * r)
        ref = att.examiner_search(nat, k1, r)[0]  # V per draw
        moved, legal = att.after(stp, np.full(r, int(example["target_move"])), r)
        w_m = att.examiner_search(moved, k2, r)[0]
        q = np.where(legal, 1 - w_m, 0.0)
        ok = ref - q > eta
    return {
        "rate": float(np.mean(ok)),
        "repeats": r,
        "examiner_mean": float(np.mean(ref)),
        "examiner_std": float(np.std(ref)),
    }


def selfplay_games(
    spec: AgentSpec,
    params,
    key,
    *,
    num_games: int,
    num_simulations: int,
    max_steps: int | None = None,
    temperature_moves: int = 4,
) -> list[list[int]]:
    """Natural games to attack: the agent's own MCTS games (Gumbel noise; the first
    ``temperature_moves`` moves sampled from the improved policy for variety)."""
    game, net = spec.make_game(), spec.make_net()
    max_steps = max_steps or 2 * game.num_points

    @jax.jit
    def run(key):
        k0, key = jax.random.split(key)
        s = jax.vmap(game.init_black_first)(jax.random.split(k0, num_games))

        def body(c, x):
            s, done = c
            t, k = x
            k1, k2 = jax.random.split(k)
            so = search(game, net, params, k1, s, num_simulations=num_simulations)
            sampled = jax.random.categorical(k2, jnp.log(so.action_weights + 1e-9))
            a = jnp.where(t < temperature_moves, sampled, so.action)
            a = jnp.where(done, -1, a)
            s2 = jax.vmap(game.step)(s, jnp.maximum(a, 0))
            s = jax.tree.map(
                lambda u, v: jnp.where(done.reshape((-1,) + (1,) * (u.ndim - 1)), u, v), s, s2
            )
            return (s, done | s.terminated), a

        _, acts = jax.lax.scan(
            body,
            (s, jnp.zeros(num_games, bool)),
            (jnp.arange(max_steps), jax.random.split(key, max_steps)),
        )
        return acts.T

    acts = np.asarray(run(key))
    return [[int(a) for a in row if a >= 0] for row in acts]
