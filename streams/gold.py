"""Gold labels from a file: human-verified (query, label) pairs the label analysis is measured on.

A shop's annotators work in spreadsheets, so CSV (a header with ``query`` and ``label`` columns) and
JSONL (one ``{"query": ..., "label": ...}`` object a line) are both read. Queries are normalised the
way search logs are (``store.taxonomy.normalise_query``), so "Red  Shoes" labels the query that
shoppers typed as "red shoes". A file is loaded whole or not at all: one bad row stops the load and
names its line, because a half-loaded gold set silently skews every accuracy it is used for.
"""

import csv
import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE, INTENT_TYPES
from store.labels import known_labels, upsert_gold
from store.taxonomy import normalise_query
from streams.exceptions import GoldFileError

CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


def read_gold_file(path: Path) -> list[tuple[str, str]]:
    """(normalised query, label) pairs in file order (a query may repeat: the later row wins).

    The format follows the suffix: ``.csv``, or ``.jsonl`` / ``.ndjson``.
    """
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | JSONL_SUFFIXES:
        raise GoldFileError(f"{path}: unknown format {suffix or '(no suffix)'!r}; use .csv or .jsonl")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = _csv_rows(path, fh) if suffix in CSV_SUFFIXES else _jsonl_rows(path, fh)
            pairs = [_pair(path, line, row) for line, row in rows]
    except UnicodeDecodeError as exc:
        raise GoldFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise GoldFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if not pairs:
        raise GoldFileError(f"{path}: no gold labels in it")
    return pairs


def _csv_rows(path: Path, fh: Iterable[str]) -> list[tuple[int, Any]]:
    reader = csv.DictReader(fh)
    missing = {"query", "label"} - set(reader.fieldnames or ())
    if missing:
        raise GoldFileError(
            f"{path}: the header needs 'query' and 'label' columns (missing {', '.join(sorted(missing))})"
        )
    return [(reader.line_num, row) for row in reader]


def _jsonl_rows(path: Path, fh: Iterable[str]) -> list[tuple[int, Any]]:
    rows = []
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            rows.append((line, json.loads(text)))
        except json.JSONDecodeError as exc:
            raise GoldFileError(f"{path}:{line}: not JSON ({exc.msg})") from exc
    return rows


def _pair(path: Path, line: int, row: Any) -> tuple[str, str]:
    if not isinstance(row, dict):
        raise GoldFileError(f"{path}:{line}: expected an object with 'query' and 'label'")
    query, label = row.get("query"), row.get("label")
    if not isinstance(query, str) or not normalise_query(query):
        raise GoldFileError(f"{path}:{line}: 'query' must be non-empty text")
    if not isinstance(label, str) or not label.strip():
        raise GoldFileError(f"{path}:{line}: 'label' must be non-empty text")
    return normalise_query(query), label.strip()


def load_gold(
    db: Database,
    path: Path,
    *,
    allowed: Iterable[str] = (),
    source: str = "file",
    purpose: str = "eval",
    dimension: str = CATEGORY,
    weight: float = 1.0,
) -> int:
    """Validate ``path`` against the label set of ``dimension`` and upsert it with training
    ``weight`` (what a ``train`` row counts beside weak rows); returns the rows written.

    The category label set is ``allowed`` (the closed taxonomy, when configured), else every label
    the catalog votes for: a gold label no product can ever vote for could never be matched and
    would only make every labeling function look wrong. The intent-type set is fixed
    (``store.dimensions.INTENT_TYPES``).
    """
    pairs = dict(read_gold_file(path))  # one row per query (Postgres upserts a row once per statement)
    with db.session() as session:
        labels = set(INTENT_TYPES) if dimension == INTENT_TYPE else set(allowed) or known_labels(session)
        if not labels:
            raise GoldFileError("no known intent labels to check against: load the catalog first")
        unknown = sorted(set(pairs.values()) - labels)
        if unknown:
            raise GoldFileError(unknown_labels_message(path, unknown, labels))
        return upsert_gold(
            session, pairs.items(), source=source, purpose=purpose, dimension=dimension, weight=weight
        )


_SHOWN_KNOWN = 10  # known labels named in an error: enough to spot the scheme, short enough for one line
_SHOWN_UNKNOWN = 5


def unknown_labels_message(path: Path, unknown: Sequence[str], known: Iterable[str]) -> str:
    """One readable line: the unknown labels (each with its closest known label, if any) and a
    sample of the known ones; a catalog has hundreds, and all of them on one line hides the point."""
    ordered = sorted(known)
    named = []
    for label in unknown[:_SHOWN_UNKNOWN]:
        close = difflib.get_close_matches(label, ordered, n=1)
        named.append(f"{label!r} (did you mean {close[0]!r}?)" if close else repr(label))
    more_unknown = f" and {len(unknown) - _SHOWN_UNKNOWN} more" if len(unknown) > _SHOWN_UNKNOWN else ""
    sample = ", ".join(ordered[:_SHOWN_KNOWN])
    more_known = f" and {len(ordered) - _SHOWN_KNOWN} more" if len(ordered) > _SHOWN_KNOWN else ""
    return (
        f"{path}: {len(unknown)} unknown label(s): {', '.join(named)}{more_unknown}; "
        f"{len(ordered)} known: {sample}{more_known} (the catalog's labels, or INTENTLOOP_TAXONOMY__LABELS)"
    )


_EXAMPLES = 5


@dataclass(frozen=True)
class MergedGold:
    """A gold file reduced to one row per normalised query, and what the reduction did.

    Annotators' files repeat queries ("Red Shoes" and "red shoes" normalise to one query; two
    annotators label the same one). Scoring every row would weigh a repeated query more and count
    a disagreement against the model twice, so evaluation scores distinct queries, where the later
    row of a query wins (as ``labels gold load`` stores them), and reports what was merged.
    """

    rows: list[tuple[str, str]]  # (normalised query, label), sorted by query
    file_rows: int
    repeated: dict[str, list[str]]  # query -> its labels in file order, for queries on several rows

    @property
    def disagreeing(self) -> dict[str, list[str]]:
        return {q: labels for q, labels in self.repeated.items() if len(set(labels)) > 1}

    def summary(self) -> dict[str, Any]:
        """``rows`` (of the file), ``distinct_queries`` (scored) and ``merged`` (what was folded)."""
        disagreeing = self.disagreeing
        return {
            "rows": self.file_rows,
            "distinct_queries": len(self.rows),
            "merged": {
                "rows": self.file_rows - len(self.rows),
                "queries": len(self.repeated),
                "disagreeing_queries": len(disagreeing),
                "rule": "one row per normalised query; the later row's label wins",
                "examples": [
                    {"query": q, "labels": labels, "used": labels[-1]}
                    for q, labels in sorted(disagreeing.items())[:_EXAMPLES]
                ],
            },
        }


def merge_gold(pairs: Sequence[tuple[str, str]]) -> MergedGold:
    """One row per query from ``read_gold_file``'s pairs (the later row wins), with the record."""
    by_query: dict[str, list[str]] = {}
    for query, label in pairs:
        by_query.setdefault(query, []).append(label)
    return MergedGold(
        rows=sorted((q, labels[-1]) for q, labels in by_query.items()),
        file_rows=len(pairs),
        repeated={q: labels for q, labels in by_query.items() if len(labels) > 1},
    )
