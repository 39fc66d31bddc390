"""A GTP driver for GNU Go (a subprocess with per-command timeouts) and agent-vs-GNU Go games.

``GnuGo.available()`` tells whether the ``gnugo`` binary is on PATH (Debian package ``gnugo``);
callers skip with :data:`MISSING` as the message when it is not.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.go_attack.records import gtp_to_point, point_to_gtp

__all__ = ["MISSING", "GnuGo", "GtpError", "play_vs_gnugo"]

MISSING = (
    "gnugo not found on PATH or in /usr/games: install it with `apt-get install gnugo` "
    "(Debian/Ubuntu)"
)


def _exe() -> str | None:
    """The gnugo binary: PATH first, then Debian's /usr/games (often not on PATH)."""
    return shutil.which("gnugo") or shutil.which("gnugo", path="/usr/games")


class GtpError(RuntimeError):
    """GNU Go answered an error, died, or did not answer in time."""


class GnuGo:
    """``gnugo --mode gtp`` for one board size and komi; ``command`` returns the answer text."""

    def __init__(self, size: int, komi: float, *, level: int = 1, timeout: float = 30.0):
        exe = _exe()
        if exe is None:
            raise FileNotFoundError(MISSING)
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [exe, "--mode", "gtp", "--level", str(level), "--chinese-rules"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self._buf = b""
        self.size = size
        self.command(f"boardsize {size}")
        self.command("clear_board")
        self.command(f"komi {komi}")

    @staticmethod
    def available() -> bool:
        return _exe() is not None

    def command(self, cmd: str) -> str:
        if self.proc.poll() is not None:
            raise GtpError(f"gnugo exited (code {self.proc.returncode}) before {cmd!r}")
        os.write(self.proc.stdin.fileno(), (cmd + "\n").encode())
        fd, deadline = self.proc.stdout.fileno(), time.time() + self.timeout
        while b"\n\n" not in self._buf:  # a GTP answer ends with an empty line
            left = deadline - time.time()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise GtpError(f"gnugo did not answer {cmd!r} within {self.timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise GtpError(f"gnugo closed its output during {cmd!r}")
            self._buf += chunk.replace(b"\r", b"")
        answer, self._buf = self._buf.split(b"\n\n", 1)
        text = answer.decode().strip()
        if text.startswith("?"):
            raise GtpError(f"gnugo rejected {cmd!r}: {text[1:].strip()}")
        return text.lstrip("=").strip()

    def play(self, colour: str, point: int | None) -> None:
        self.command(f"play {colour} {point_to_gtp(point, self.size)}")

    def genmove(self, colour: str) -> int | None | str:
        """GNU Go's move: a point, ``None`` for pass, or ``"resign"``."""
        ans = self.command(f"genmove {colour}")
        if ans.lower() == "resign":
            return "resign"
        return gtp_to_point(ans, self.size)

    def final_score(self) -> str:
        return self.command("final_score")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.write(self.proc.stdin.fileno(), b"quit\n")
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()


def play_vs_gnugo(
    spec,
    params,
    key,
    *,
    num_games: int,
    num_simulations: int,
    level: int = 1,
    timeout: float = 30.0,
) -> dict:
    """Agent (MCTS, deterministic) vs GNU Go on the agent's board, colours alternating.

    The game is played with pgx's rules (area scoring, ``spec.komi``, scored after the agent's
    ``max_moves``); GNU Go's moves are checked against pgx's legal moves (an illegal GNU Go move
    is recorded as an error, not a win). Returns wins/losses/errors and GNU Go's own final score
    for each game (its second opinion).
    """
    from robustml_jax.go_attack.agent import search

    if spec.game != "go":
        raise ValueError(f"GNU Go plays Go, not {spec.game}")
    game, net = spec.make_game(), spec.make_net()
    step = jax.jit(game.step)

    @jax.jit
    def agent_move(state, k):
        s = jax.tree.map(lambda a: a[None], state)
        return search(
            game, net, params, k, s, num_simulations=num_simulations, gumbel_scale=0.0
        ).action[0]

    out = {
        "games": 0,
        "wins": 0,
        "losses": 0,
        "errors": 0,
        "wins_by_gnugo_score": 0,
        "gnugo_scores": [],
        "records": [],
    }
    for g in range(num_games):
        agent_black = g % 2 == 0
        gg = GnuGo(spec.size, spec.komi, level=level, timeout=timeout)
        state = game.init_black_first(jax.random.fold_in(key, g))
        moves, result = [], None
        try:
            while not bool(state.terminated):
                colour = "b" if int(game.color(state)) == 0 else "w"
                if (colour == "b") == agent_black:
                    a = int(agent_move(state, jax.random.fold_in(key, 1000 * g + len(moves))))
                    gg.play(colour, None if a == game.null_move else a)
                else:
                    mv = gg.genmove(colour)
                    if mv == "resign":
                        result = "agent"
                        break
                    a = game.null_move if mv is None else mv
                    if not bool(state.legal_action_mask[a]):
                        result = "error"
                        break
                moves.append(a)
                state = step(state, jnp.int32(a))
            score = gg.final_score()
        finally:
            gg.close()
        if result is None:
            r = np.asarray(state.rewards)  # player 0 = black
            black_won = r[0] > 0
            result = "agent" if black_won == agent_black else "gnugo"
        out["games"] += 1
        out["wins"] += result == "agent"
        out["losses"] += result == "gnugo"
        out["errors"] += result == "error"
        out["gnugo_scores"].append(score)
        # GNU Go's own verdict (dead stones removed), independent of pgx's naive area count
        gnugo_winner = score[:1].upper()
        out["wins_by_gnugo_score"] += gnugo_winner == ("B" if agent_black else "W")
        out["records"].append({"agent_black": agent_black, "moves": moves, "result": result})
    out["win_rate"] = out["wins"] / max(out["games"], 1)
    return out
