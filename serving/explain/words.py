"""The words of a query as the shopper typed them, and the query the model sees without some of them.

Attributions are reported per word, never per sub-word piece: an operator reads "garden", not
"gard" and "##en". A word is a whitespace-separated chunk of the raw query; a chunk holding CJK
characters is segmented further (Chinese is written without spaces), with ``rjieba`` (jieba-rs,
which returns character offsets) when it is installed, else one word per character. Each word keeps
its span in the raw string *and* in the model's text (``normalise_query`` of the raw string), so
sub-word attributions computed on the model's text can be summed back onto the shopper's words.

Removing a word (ERASER's and the perturbation explainers' operation) replaces it with a space and
normalises again: "red garden hose" without "garden" is "red hose"; "红色连衣裙" without "红色"
is "连衣裙". Every method and the faithfulness benchmark use :func:`keep`, so they measure the same
operation.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from store.taxonomy import normalise_query

# CJK radicals, kana, bopomofo, unified ideographs (with extension A), hangul, compatibility ideographs
_CJK = re.compile(
    r"[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


@dataclass(frozen=True)
class Word:
    """One word: its text as typed, its span in the raw query, and its span in the model's text."""

    text: str
    start: int  # raw query offsets
    end: int
    norm_start: int  # offsets in ``Query.text`` (the normalised query the model sees)
    norm_end: int


@dataclass(frozen=True)
class Query:
    """A raw query split into words, with the normalised text the model scores."""

    raw: str
    words: tuple[Word, ...]
    text: str  # == normalise_query(raw)

    def keep(self, mask: Sequence[bool] | Sequence[int]) -> str:
        """The model's text with only the words where ``mask`` is true (the others become a space)."""
        return keep(self, mask)


@cache
def _jieba() -> Any:
    try:
        import rjieba
    except ImportError:  # an optional extra: without it, every CJK character is a word of its own
        return None
    return rjieba


def _segments(chunk: str) -> list[tuple[int, int]]:
    """Word spans inside one whitespace-free chunk (CJK segmented, anything else one word)."""
    if not _CJK.search(chunk):
        return [(0, len(chunk))]
    jieba = _jieba()
    if jieba is not None:
        return [(s, e) for _, s, e in jieba.tokenize(chunk) if chunk[s:e].strip()]
    spans: list[tuple[int, int]] = []
    run = -1  # start of the current non-CJK run (Latin letters inside Chinese stay one word)
    for i, ch in enumerate(chunk):
        if _CJK.match(ch):
            if run >= 0:
                spans.append((run, i))
                run = -1
            spans.append((i, i + 1))
        elif run < 0:
            run = i
    if run >= 0:
        spans.append((run, len(chunk)))
    return spans


def split_query(raw: str) -> Query:
    """``raw`` split into words, each with its raw and normalised spans.

    The normalised text is built word by word (casefold can change a word's length: "ß" -> "ss"),
    so the spans are exact; it equals ``normalise_query(raw)`` by construction.
    """
    words: list[Word] = []
    norm = ""
    for chunk in re.finditer(r"\S+", raw):
        for i, (s, e) in enumerate(_segments(chunk.group())):
            piece = chunk.group()[s:e]
            if norm and i == 0:
                norm += " "
            folded = piece.casefold()
            at = chunk.start()
            words.append(Word(piece, at + s, at + e, len(norm), len(norm) + len(folded)))
            norm += folded
    return Query(raw, tuple(words), norm)


def keep(query: Query, mask: Sequence[bool] | Sequence[int]) -> str:
    """The model's text of ``query`` keeping only the words where ``mask`` is true."""
    if len(mask) != len(query.words):
        raise ValueError(f"mask of {len(mask)} for {len(query.words)} words")
    parts: list[str] = []
    last = 0
    for word, on in zip(query.words, mask, strict=True):
        parts.append(query.text[last : word.norm_start])
        parts.append(query.text[word.norm_start : word.norm_end] if on else " ")
        last = word.norm_end
    return normalise_query("".join(parts))
