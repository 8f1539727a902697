"""`intentloop labels export`: the aggregated label of every query, as a file a shop can audit.

The rows are ``label_distributions`` as the latest aggregation left them (store.labels decides the
columns: every one but bookkeeping, so new columns appear here by themselves). JSONL keeps types;
CSV is for spreadsheets, with the label distribution as a JSON cell. A file is written whole or
not at all (a temporary file renamed over it), so a failed export never leaves half a file that
looks complete.
"""

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from store.db import Database
from store.exceptions import IntentloopError
from store.labels import iter_label_export, label_export_columns
from store.status import label_distribution_counts

FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class ExportResult:
    written: int
    labelled: int
    abstained: int


def format_for(out: Path | None, fmt: str | None) -> str:
    """The explicit ``fmt``, else ``csv`` for a ``.csv`` file, else ``jsonl``."""
    if fmt is not None:
        return fmt
    return "csv" if out is not None and out.suffix.lower() == ".csv" else "jsonl"


def export_labels(db: Database, out: Path | None, fmt: str, *, include_abstained: bool) -> ExportResult:
    """Write the per-query labels to ``out`` (stdout when ``None``); abstentions only if asked."""
    with db.session() as session:
        labelled, abstained = label_distribution_counts(session)
        if labelled + abstained == 0:
            raise IntentloopError("no aggregated labels yet: run `intentloop labels aggregate` first")
        rows = iter_label_export(session, include_abstained=include_abstained)
        with _target(out) as fh:
            written = write_rows(rows, fh, fmt, label_export_columns())
    return ExportResult(written, labelled, abstained)


def write_rows(rows: Iterable[dict[str, Any]], fh: TextIO, fmt: str, columns: list[str]) -> int:
    """``rows`` as JSON lines or CSV with a header (written even when there are no rows)."""
    if fmt == "jsonl":
        n = 0
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
        return n
    if fmt != "csv":
        raise IntentloopError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    writer = csv.writer(fh)
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
        n += 1
    return n


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


@contextmanager
def _target(out: Path | None) -> Iterator[TextIO]:
    if out is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
