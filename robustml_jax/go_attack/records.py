"""Game records: SGF reading/writing (sgfmill), replay into pgx Go states, board rendering.

Coordinates: a point is the action ``row * size + col`` with row 0 at the TOP (pgx's layout and
SGF's letters); sgfmill's ``(row, col)`` counts rows from the bottom, GTP's ``C3`` too. ``None``
is a pass. A :class:`Record` holds the main line as ``moves: list[(colour, point | None)]`` with
colour ``"b"``/``"w"``.

Errors are one-line ``ValueError``\\ s naming the source and the place: malformed SGF (byte offset
and line), a bad node (its index), an illegal move (its number and coordinate), a board size
other than the one asked for.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sgfmill import sgf

__all__ = [
    "Record",
    "gtp_to_point",
    "parse_sgf",
    "point_to_gtp",
    "render_png",
    "render_svg",
    "replay_go",
    "to_sgf",
]

_GTP_COLS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"


@dataclasses.dataclass
class Record:
    size: int
    moves: list  # [(colour "b"/"w", point | None)]
    komi: float = 7.5
    comment: str = ""
    source: str = "<sgf>"


def point_to_gtp(p: int | None, size: int) -> str:
    if p is None or p == size * size:
        return "pass"
    r, c = divmod(int(p), size)
    return f"{_GTP_COLS[c]}{size - r}"


def gtp_to_point(text: str, size: int) -> int | None:
    t = text.strip().upper()
    if t == "PASS":
        return None
    try:
        c = _GTP_COLS.index(t[0])
        r = size - int(t[1:])
    except (ValueError, IndexError):
        raise ValueError(f"bad GTP vertex {text!r}") from None
    if not (0 <= c < size and 0 <= r < size):
        raise ValueError(f"GTP vertex {text!r} is off a {size}x{size} board")
    return r * size + c


def _locate(data: bytes) -> str:
    """Where an SGF's syntax breaks: the first unterminated value or unclosed bracket."""
    text = data.decode("latin-1")
    start = text.find("(")
    if start < 0:
        return "no '(' found (not SGF)"
    depth, in_val, val_start, esc, open_at = 0, False, -1, False, []
    for i in range(start, len(text)):
        ch = text[i]
        if in_val:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == "]":
                in_val = False
            continue
        if ch == "[":
            in_val, val_start = True, i
        elif ch == "(":
            depth += 1
            open_at.append(i)
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"unmatched ')' at byte {i} (line {text.count(chr(10), 0, i) + 1})"
            open_at.pop()
            if depth == 0:
                break
    if in_val:
        i = val_start
        line = text.count(chr(10), 0, i) + 1
        return f"unterminated property value starting at byte {i} (line {line})"
    if depth > 0:
        i = open_at[-1]
        return f"unclosed '(' opened at byte {i} (line {text.count(chr(10), 0, i) + 1})"
    return "in the game tree"


def parse_sgf(data: bytes | str, *, source: str = "<sgf>", size: int | None = None) -> Record:
    """Parses one SGF game's main line.

    Raises:
      ValueError: malformed SGF (with the place), a bad move value (with the node index),
        setup stones (unsupported), or a board size other than ``size``.
    """
    if isinstance(data, str):
        data = data.encode()
    try:
        game = sgf.Sgf_game.from_bytes(data)
    except ValueError as e:
        raise ValueError(
            f"{source}: malformed SGF, {_locate(data)}: {e or 'parse error'}"
        ) from None
    n = game.get_size()
    if size is not None and n != size:
        raise ValueError(f"{source}: board size {n}x{n}, expected {size}x{size}")
    root = game.get_root()
    if root.has_property("AB") or root.has_property("AW"):
        raise ValueError(f"{source}: setup stones (AB/AW) are not supported")
    try:
        komi = float(game.get_komi())
    except ValueError:
        komi = 7.5
    moves = []
    comment = ""
    for i, node in enumerate(game.get_main_sequence()[1:], start=1):
        try:
            colour, mv = node.get_move()
        except ValueError as e:
            raise ValueError(f"{source}: bad move in node {i}: {e or 'unreadable value'}") from None
        if node.has_property("C"):
            comment = node.get("C")
        if colour is None:
            continue
        p = None if mv is None else (n - 1 - mv[0]) * n + mv[1]
        moves.append((colour, p))
    return Record(n, moves, komi, comment, source)


def to_sgf(rec: Record, *, comment: str | None = None, extra: dict | None = None) -> bytes:
    """Writes the record as SGF (``comment`` on the last node; ``extra`` root text properties)."""
    g = sgf.Sgf_game(rec.size)
    g.get_root().set("KM", rec.komi)
    for k, v in (extra or {}).items():
        g.get_root().set_raw(k, str(v).encode().replace(b"]", b"\\]"))
    node = g.get_root()
    for colour, p in rec.moves:
        node = g.extend_main_sequence()
        mv = None if p is None else (rec.size - 1 - p // rec.size, p % rec.size)
        node.set_move(colour, mv)
    text = rec.comment if comment is None else comment
    if text:
        node.set("C", text)
    return g.serialise()


def _alternate(moves: Sequence) -> list[int | None]:
    """Actions with passes inserted where a colour moves twice (black starts)."""
    out, colour = [], "b"
    for c, p in moves:
        if c != colour:
            out.append(None)
            colour = c
        out.append(p)
        colour = "w" if colour == "b" else "b"
    return out


def replay_go(records: Sequence[Record], *, komi: float | None = None, history_length: int = 8):
    """Replays Go records into pgx states, all games in one jitted, vmapped scan.

    Returns ``(states, actions)``: the final pgx states (batched, leading axis = game) and the
    padded action arrays [G, T] (-1 = padding).

    Raises:
      ValueError: the records have different board sizes, or a move is illegal (names the game,
        the move number and its coordinate).
    """
    import pgx.go

    sizes = {r.size for r in records}
    if len(sizes) != 1:
        raise ValueError(f"records have several board sizes {sorted(sizes)}; replay one size")
    size = sizes.pop()
    env = pgx.go.Go(
        size=size, komi=records[0].komi if komi is None else komi, history_length=history_length
    )
    seqs = [[size * size if p is None else p for p in _alternate(r.moves)] for r in records]
    t = max(1, max(len(s) for s in seqs))
    acts = np.full((len(seqs), t), -1, np.int32)
    for i, s in enumerate(seqs):
        acts[i, : len(s)] = s
    states, bad = _replay_fn(env, size)(jnp.asarray(acts))
    bad = np.asarray(bad)
    for i, b in enumerate(bad):
        if b >= 0:
            r = records[i]
            p = seqs[i][b]
            colour = "B" if b % 2 == 0 else "W"
            raise ValueError(
                f"{r.source}: move {b + 1} ({colour} {point_to_gtp(p, size)}) is illegal"
            )
    return states, acts


_REPLAY_CACHE: dict = {}


def _replay_fn(env, size):
    key = (size, env._game.komi, env._game.history_length)
    if key not in _REPLAY_CACHE:

        def one(actions):
            s0 = env.init(jax.random.key(0))

            def body(c, x):
                s, bad = c
                i, a = x
                play = a >= 0
                legal = s.legal_action_mask[jnp.maximum(a, 0)] & ~s.terminated
                bad = jnp.where(play & ~legal & (bad < 0), i, bad)
                s2 = env.step(s, jnp.maximum(a, 0))
                s = jax.tree.map(lambda u, v: jnp.where(play & (bad < 0), v, u), s, s2)
                return (s, bad), None

            (s, bad), _ = jax.lax.scan(
                body, (s0, jnp.int32(-1)), (jnp.arange(actions.shape[0]), actions)
            )
            return s, bad

        _REPLAY_CACHE[key] = jax.jit(jax.vmap(one))
    return _REPLAY_CACHE[key]


# ---------------------------------------------------------------- rendering


def render_svg(
    board,
    size: int,
    *,
    added: Sequence[int] = (),
    move: int | None = None,
    title: str = "",
    cell: int = 28,
) -> str:
    """An SVG picture of ``board`` [S*S] (+1 black, -1 white): added stones get a red square,
    the agent's move a red circle (an empty point is drawn as a red ring)."""
    board = np.asarray(board).reshape(-1)
    if board.shape[0] != size * size:
        raise ValueError(f"board has {board.shape[0]} points, expected {size * size}")
    m = cell
    w = m * (size + 1)
    h = w + (20 if title else 0)
    y0 = 20 if title else 0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
        f'<rect width="{w}" height="{h}" fill="#dcb35c"/>',
    ]
    if title:
        out.append(f'<text x="4" y="15" font-size="13" font-family="sans-serif">{title}</text>')
    for i in range(size):
        a = m + i * m
        out.append(f'<line x1="{m}" y1="{y0 + a}" x2="{m * size}" y2="{y0 + a}" stroke="black"/>')
        out.append(f'<line x1="{a}" y1="{y0 + m}" x2="{a}" y2="{y0 + m * size}" stroke="black"/>')
        out.append(f'<text x="{a - 4}" y="{y0 + m // 2}" font-size="10">{_GTP_COLS[i]}</text>')
        out.append(f'<text x="2" y="{y0 + a + 4}" font-size="10">{size - i}</text>')
    for p in range(size * size):
        r, c = divmod(p, size)
        x, y = m + c * m, y0 + m + r * m
        if board[p]:
            fill = "black" if board[p] > 0 else "white"
            out.append(
                f'<circle cx="{x}" cy="{y}" r="{m * 0.45:.1f}" fill="{fill}" stroke="black"/>'
            )
        if p in added:
            s = m * 0.25
            out.append(
                f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" '
                f'height="{2 * s:.1f}" fill="red"/>'
            )
        if move is not None and p == move:
            out.append(
                f'<circle cx="{x}" cy="{y}" r="{m * 0.2:.1f}" fill="none" stroke="red" '
                'stroke-width="3"/>'
            )
    out.append("</svg>")
    return "\n".join(out)


def render_png(
    board,
    size: int,
    path: str | pathlib.Path | None = None,
    *,
    added: Sequence[int] = (),
    move: int | None = None,
    title: str = "",
    cell: int = 28,
):
    """The same picture as :func:`render_svg` drawn with PIL; saved to ``path`` if given.
    Returns the ``PIL.Image``."""
    from PIL import Image, ImageDraw

    board = np.asarray(board).reshape(-1)
    if board.shape[0] != size * size:
        raise ValueError(f"board has {board.shape[0]} points, expected {size * size}")
    m = cell
    y0 = 20 if title else 0
    w = m * (size + 1)
    img = Image.new("RGB", (w, w + y0), (220, 179, 92))
    d = ImageDraw.Draw(img)
    if title:
        d.text((4, 4), title, fill="black")
    for i in range(size):
        a = m + i * m
        d.line([(m, y0 + a), (m * size, y0 + a)], fill="black")
        d.line([(a, y0 + m), (a, y0 + m * size)], fill="black")
        d.text((a - 3, y0 + 2), _GTP_COLS[i], fill="black")
        d.text((2, y0 + a - 5), str(size - i), fill="black")
    rr = m * 0.45
    for p in range(size * size):
        r, c = divmod(p, size)
        x, y = m + c * m, y0 + m + r * m
        if board[p]:
            fill = "black" if board[p] > 0 else "white"
            d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=fill, outline="black")
        if p in added:
            s = m * 0.25
            d.rectangle([x - s, y - s, x + s, y + s], fill="red")
        if move is not None and p == move:
            s = m * 0.22
            d.ellipse([x - s, y - s, x + s, y + s], outline="red", width=3)
    if path is not None:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pathlib.Path(path).write_bytes(buf.getvalue())
    return img
