"""SGF reading/writing, replay into pgx Go, rendering; the paper's records from the data dir."""

import numpy as np
import pytest

from robustml_jax.core import datasets
from robustml_jax.core.datasets import DatasetNotFoundError
from robustml_jax.go_attack import records


def _data():
    try:
        datasets.locate("go_sgf")
    except DatasetNotFoundError as e:
        pytest.skip(f"go_sgf not found ({e.how})")
    nat = datasets.load("go_sgf", "natural")
    adv = datasets.load("go_sgf", "adversarial")
    return nat, adv


def test_roundtrip_and_coordinates():
    rec = records.Record(7, [("b", 0), ("w", 48), ("b", None), ("w", 8)], 7.5)
    data = records.to_sgf(rec, comment="hello")
    assert b"B[aa]" in data and b"W[gg]" in data  # point 0 = top-left = SGF "aa"
    back = records.parse_sgf(data)
    assert back.size == 7 and back.moves == rec.moves and back.comment == "hello"
    assert back.komi == 7.5
    assert records.point_to_gtp(0, 7) == "A7" and records.point_to_gtp(48, 7) == "G1"
    assert records.gtp_to_point("A7", 7) == 0 and records.gtp_to_point("pass", 7) is None
    assert records.point_to_gtp(8 * 19 + 8, 19) == "J11"  # no letter I in GTP


def test_malformed_sgf_says_where():
    with pytest.raises(ValueError, match=r"game\.sgf: malformed SGF, unterminated .* byte 15"):
        records.parse_sgf(b"(;SZ[9];B[aa];C[oops)", source="game.sgf")
    with pytest.raises(ValueError, match="bad move in node 1"):
        records.parse_sgf(b"(;SZ[9];B[aa;W[bb])", source="game.sgf")
    with pytest.raises(ValueError, match=r"unclosed '\(' opened at byte 0"):
        records.parse_sgf(b"(;SZ[9];B[aa];W[bb]", source="x")
    with pytest.raises(ValueError, match="not SGF"):
        records.parse_sgf(b"hello", source="x")
    with pytest.raises(ValueError, match="bad move in node 2"):
        records.parse_sgf(b"(;SZ[9];B[aa];W[b])", source="x")
    with pytest.raises(ValueError, match="board size 9x9, expected 19x19"):
        records.parse_sgf(b"(;SZ[9];B[aa])", source="x", size=19)


def test_illegal_move_in_record_names_the_move():
    # W plays on the occupied point of move 1 -> move 2 is illegal
    rec = records.parse_sgf(b"(;SZ[5]KM[0.5];B[cc];W[cc])", source="bad.sgf")
    with pytest.raises(ValueError, match=r"bad.sgf: move 2 \(W C3\) is illegal"):
        records.replay_go([rec])


def test_replay_captures_and_render(tmp_path):
    # black captures a white corner stone: B b1... (top-left corner white at aa)
    rec = records.parse_sgf(b"(;SZ[5]KM[0.5];B[ba];W[aa];B[ab])")
    st, _ = records.replay_go([rec])
    board = np.sign(np.asarray(st._x.board[0]))
    assert board[0] == 0 and board[1] == 1 and board[5] == 1  # the white stone was captured
    svg = records.render_svg(board, 5, added=[12], move=6, title="t")
    assert svg.startswith("<svg") and svg.count('fill="red"') == 1 and 'stroke="red"' in svg
    img = records.render_png(board, 5, tmp_path / "b.png", added=[12], move=6)
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    px = np.asarray(img)
    assert (px[..., 0] > 200).sum() > 0 and ((px[..., 0] > 200) & (px[..., 1] < 50)).any()
    with pytest.raises(ValueError, match="expected 25"):
        records.render_svg(np.zeros(24), 5)


def test_paper_records_parse_and_replay():
    nat, adv = _data()
    assert len(nat["sgf"]) == 196 and len(adv["sgf"]) == 69
    recs = [
        records.parse_sgf(b, source=n, size=19)
        for n, b in zip(nat["name"] + adv["name"], nat["sgf"] + adv["sgf"], strict=True)
    ]
    lengths = [len(r.moves) for r in recs[:196]]
    assert min(lengths) == 83 and max(lengths) == 364
    # every adversarial example = a natural game's prefix + appended stones (mostly 2 moves)
    by_name: dict = {}
    for r in recs[:196]:
        by_name.setdefault(r.source.split("/")[-1], []).append(r)
    matched = 0
    for r in recs[196:]:
        base = r.source.split("/")[-1].split(".sgf.")[0] + ".sgf"
        k = len(r.moves)
        tail = 1 if "_clean" in r.source else 2
        if any(r.moves[: k - tail] == g.moves[: k - tail] for g in by_name.get(base, [])):
            matched += 1
    assert matched >= 60
    # replay a few (one jitted vmapped scan; all 265 in the slow test) and render one
    sub = recs[:3] + recs[196:199]
    st, _ = records.replay_go(sub)
    boards = np.sign(np.asarray(st._x.board))
    assert boards.shape == (6, 361) and (boards != 0).sum(1).min() > 50
    added = [p for _, p in sub[3].moves[-2:] if p is not None]
    assert added and all(boards[3][p] != 0 for p in added)
    assert records.render_svg(boards[3], 19, added=added).count('fill="red"') == len(added)
    # SGF round trip of real records
    for r in sub:
        assert records.parse_sgf(records.to_sgf(r)).moves == r.moves


@pytest.mark.slow
def test_all_paper_records_replay_and_render(tmp_path):
    nat, adv = _data()
    recs = [
        records.parse_sgf(b, source=n, size=19)
        for n, b in zip(nat["name"] + adv["name"], nat["sgf"] + adv["sgf"], strict=True)
    ]
    st, _ = records.replay_go(recs)  # raises on any illegal move
    boards = np.sign(np.asarray(st._x.board))
    for i in range(0, len(recs), 10):
        records.render_png(boards[i], 19, tmp_path / f"{i}.png")
    assert len(list(tmp_path.glob("*.png"))) == len(range(0, len(recs), 10))
