"""SentencePiece and WordPiece tokenizers behind one interface.

Both wrap a fast native library (``sentencepiece``, ``tokenizers``) and only add what the suite
needs on top: T5's sentinel convention for SentencePiece, no built-in padding or truncation
surprises for WordPiece, and one-line errors for bad input.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "check_texts",
    "train_sentencepiece",
]

_SENTINEL_RE = re.compile(r"<extra_id_(\d+)>")


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer of the suite offers.

    Attributes:
      vocab_size: number of ids the model's embedding table must hold (sentinels included).
      pad_id: the id used for padding (masked out downstream).
      eos_id: the end-of-sequence id (``</s>`` for T5, ``[SEP]`` for BERT).
    """

    vocab_size: int
    pad_id: int
    eos_id: int

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no padding)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of one id sequence."""
        ...


def check_texts(texts, who: str) -> list[str]:
    """Returns ``texts`` as a list of ``str`` or raises a one-line TypeError naming the problem."""
    if isinstance(texts, str | bytes):
        raise TypeError(f"{who} expects a list of strings, got a single {type(texts).__name__}")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{who} expects a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{who}: texts[{i}] is {type(t).__name__}, not str")
    return texts


def _check_ids(ids, vocab_size: int, who: str) -> list[int]:
    if isinstance(ids, str | bytes):
        raise TypeError(f"{who} expects a sequence of int ids, got {type(ids).__name__}")
    try:
        out = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise TypeError(f"{who} expects a flat sequence of int ids (one sequence)") from None
    bad = [i for i in out if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"{who}: id {bad[0]} is outside the vocabulary [0, {vocab_size})")
    return out


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    path: str | os.PathLike,
    *,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    seed_sentencepiece_size: int = 100_000,
) -> pathlib.Path:
    """Trains a SentencePiece model locally on ``texts`` and writes it to ``path``.

    The special ids follow T5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no BOS, so the model
    loads into :class:`SentencePieceTokenizer` exactly like T5's ``t5_vocab``. Training is
    single-threaded, hence deterministic for the same texts.

    Args:
      texts: training sentences.
      vocab_size: number of pieces (special ids included, sentinels not).
      path: where the ``.model`` file goes (parent folders are created).
      model_type: ``"unigram"`` (T5's) or ``"bpe"``, ``"char"``, ``"word"``.
      character_coverage: fraction of characters covered (1.0 for small Latin corpora).
      seed_sentencepiece_size: unigram seed vocabulary size.

    Returns:
      The path written.
    """
    import sentencepiece as spm

    from robustml_jax.core.results import atomic_write_bytes

    texts = [t for t in check_texts(texts, "train_sentencepiece") if t.strip()]
    if not texts:
        raise ValueError("train_sentencepiece needs at least one non-empty text")
    if int(vocab_size) < 4:
        raise ValueError(f"vocab_size must be >= 4 (3 special ids + 1 piece), got {vocab_size}")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buf,
            vocab_size=int(vocab_size),
            model_type=model_type,
            character_coverage=character_coverage,
            seed_sentencepiece_size=seed_sentencepiece_size,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise ValueError(
            f"SentencePiece training failed for vocab_size={vocab_size} on {len(texts)} "
            f"texts: {msg}"
        ) from None
    path = pathlib.Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


class SentencePieceTokenizer:
    """A SentencePiece model with T5's ``<extra_id_*>`` sentinels above its pieces.

    T5 (Raffel et al., 2020, Sec. 3.1.4) appends ``extra_ids`` = 100 sentinel ids to the 32,000
    SentencePiece pieces, counting *down* from the top: ``<extra_id_0>`` = ``vocab_size - 1``
    (32099 for T5), ``<extra_id_99>`` = 32000. ``encode`` maps the literal text
    ``<extra_id_N>`` to its sentinel id and ``decode`` maps it back.

    Attributes:
      vocab_size: SentencePiece pieces + ``extra_ids``.
      num_pieces: pieces of the SentencePiece model alone.
      extra_ids: number of sentinels.
      pad_id, eos_id, unk_id: the model's special ids (T5: 0, 1, 2); ``pad_id`` is 0 when the
        model defines no ``<pad>`` (padding is masked, so its value never enters a result).
      add_eos: whether ``encode`` appends ``eos_id``.
    """

    def __init__(
        self, model_file: str | os.PathLike, *, extra_ids: int = 100, add_eos: bool = False
    ):
        import sentencepiece as spm

        model_file = pathlib.Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {model_file}")
        if extra_ids < 0:
            raise ValueError(f"extra_ids must be >= 0, got {extra_ids}")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{model_file} is not a SentencePiece model: {e}") from None
        self.path = model_file
        self.num_pieces = int(self._sp.get_piece_size())
        self.extra_ids = int(extra_ids)
        self.vocab_size = self.num_pieces + self.extra_ids
        self.pad_id = int(self._sp.pad_id()) if self._sp.pad_id() >= 0 else 0
        self.eos_id = int(self._sp.eos_id())
        self.unk_id = int(self._sp.unk_id())
        self.add_eos = bool(add_eos)
        if self.add_eos and self.eos_id < 0:
            raise ValueError(f"add_eos=True but {model_file} defines no </s> piece")

    def __repr__(self) -> str:
        return (
            f"SentencePieceTokenizer({self.path.name}, pieces={self.num_pieces}, "
            f"extra_ids={self.extra_ids})"
        )

    def sentinel_id(self, i: int) -> int:
        """The id of ``<extra_id_i>``: ``vocab_size - 1 - i``."""
        if not 0 <= i < self.extra_ids:
            raise ValueError(f"sentinel index {i} outside [0, {self.extra_ids})")
        return self.vocab_size - 1 - i

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text; ``<extra_id_N>`` in the text becomes sentinel N.

        Args:
          texts: N strings.

        Returns:
          N lists of ids (``eos_id`` appended when ``add_eos``).
        """
        texts = check_texts(texts, "SentencePieceTokenizer.encode")
        plain = [i for i, t in enumerate(texts) if "<extra_id_" not in t]
        out: list[list[int]] = [[] for _ in texts]
        if plain:
            for i, ids in zip(plain, self._sp.encode([texts[i] for i in plain]), strict=True):
                out[i] = list(ids)
        for i, t in enumerate(texts):
            if "<extra_id_" in t:
                out[i] = self._encode_with_sentinels(t)
        if self.add_eos:
            for ids in out:
                ids.append(self.eos_id)
        return out

    def _encode_with_sentinels(self, text: str) -> list[int]:
        ids: list[int] = []
        pos = 0
        for m in _SENTINEL_RE.finditer(text):
            if text[pos : m.start()].strip():
                ids.extend(self._sp.encode(text[pos : m.start()]))
            k = int(m.group(1))
            if k >= self.extra_ids:
                raise ValueError(
                    f"'{m.group(0)}' in the text but the tokenizer has only {self.extra_ids} "
                    "sentinels"
                )
            ids.append(self.vocab_size - 1 - k)
            pos = m.end()
        if text[pos:].strip():
            ids.extend(self._sp.encode(text[pos:]))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of one id sequence; sentinels print as ``<extra_id_N>``, pad/EOS as nothing.

        Args:
          ids: one sequence of ids in ``[0, vocab_size)``.
        """
        ids = _check_ids(ids, self.vocab_size, "SentencePieceTokenizer.decode")
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i >= self.num_pieces:
                if run:
                    parts.append(self._sp.decode(run))
                    run = []
                parts.append(f"<extra_id_{self.vocab_size - 1 - i}>")
            else:
                run.append(i)
        if run:
            parts.append(self._sp.decode(run))
        return " ".join(p for p in parts if p)

    def id_to_piece(self, i: int) -> str:
        """The piece string of id ``i`` (``<extra_id_N>`` for sentinels)."""
        (i,) = _check_ids([i], self.vocab_size, "SentencePieceTokenizer.id_to_piece")
        if i >= self.num_pieces:
            return f"<extra_id_{self.vocab_size - 1 - i}>"
        return self._sp.id_to_piece(i)


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer read from a Hugging Face ``tokenizer.json``.

    Any padding or truncation stored in the file is switched off (all-MiniLM-L6-v2 ships
    truncation at 128 and fixed padding to 128); ``max_len`` sets the truncation instead,
    counting ``[CLS]``/``[SEP]``.

    Attributes:
      vocab_size: number of WordPiece ids (30522 for uncased BERT).
      pad_id, eos_id, cls_id, unk_id: ``[PAD]``, ``[SEP]``, ``[CLS]``, ``[UNK]``.
      max_len: the truncation length (special tokens included), or None for none.
      add_special_tokens: whether ``encode`` wraps each text in ``[CLS] ... [SEP]``.
    """

    def __init__(
        self,
        tokenizer_json: str | os.PathLike,
        *,
        max_len: int | None = None,
        add_special_tokens: bool = True,
    ):
        from tokenizers import Tokenizer as _HFTokenizer

        tokenizer_json = pathlib.Path(tokenizer_json)
        if not tokenizer_json.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {tokenizer_json}")
        if max_len is not None and max_len < (2 if add_special_tokens else 1):
            raise ValueError(f"max_len must leave room for one token, got {max_len}")
        try:
            tok = _HFTokenizer.from_file(str(tokenizer_json))
        except Exception as e:  # the Rust side raises a bare Exception
            raise ValueError(f"{tokenizer_json} is not a tokenizers JSON file: {e}") from None
        tok.no_padding()
        if max_len is None:
            tok.no_truncation()
        else:
            tok.enable_truncation(max_length=int(max_len))
        self._tok = tok
        self.path = tokenizer_json
        self.max_len = max_len
        self.add_special_tokens = bool(add_special_tokens)
        self.vocab_size = int(tok.get_vocab_size())

        def special(name: str) -> int:
            i = tok.token_to_id(name)
            if i is None:
                raise ValueError(f"{tokenizer_json} has no {name} token; not a BERT WordPiece")
            return int(i)

        self.pad_id = special("[PAD]")
        self.eos_id = special("[SEP]")
        self.cls_id = special("[CLS]")
        self.unk_id = special("[UNK]")

    def __repr__(self) -> str:
        return f"WordPieceTokenizer({self.path}, max_len={self.max_len})"

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text, ``[CLS] ... [SEP]`` included, truncated to ``max_len``.

        Args:
          texts: N strings (an empty string gives ``[CLS, SEP]``).

        Returns:
          N lists of ids.
        """
        texts = check_texts(texts, "WordPieceTokenizer.encode")
        encs = self._tok.encode_batch(texts, add_special_tokens=self.add_special_tokens)
        return [e.ids for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        """The (lower-cased, normalised) text of one id sequence, special tokens dropped."""
        ids = _check_ids(ids, self.vocab_size, "WordPieceTokenizer.decode")
        return self._tok.decode(ids, skip_special_tokens=True)
