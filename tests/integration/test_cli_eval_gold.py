"""`intentloop eval --gold` as a shop runs it (a child process): what was scored, and nothing else.

A gold file with repeated queries (one repeat disagreeing) and queries nobody searched: the report
says how many rows the file had, how many distinct queries were scored and what was merged; the
never-searched queries form the ``unseen`` slice instead of vanishing into the tail; stderr holds
the one merge line and no dependency warning or progress bar.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from training_helpers import search_rows, training_env

from serving.synthetic import synthetic_adapter
from store.artifacts import MANIFEST, ArtifactStore
from store.models import SearchQuery
from store.versions import record_version

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_LABELS = ["electronics", "fashion", "grocery"]
_SEARCHES = {"usb cable": 20, "red shoes": 20, "oat milk": 6, "hdmi adapter": 6, "wool scarf": 1, "rice": 1}
_GOLD = [
    ("USB cable", "electronics"),
    ("usb  cable", "electronics"),  # the same query again, agreeing
    ("red shoes", "fashion"),
    ("Red Shoes", "grocery"),  # ... and again, disagreeing: the later row wins
    ("oat milk", "grocery"),
    ("hdmi adapter", "electronics"),
    ("wool scarf", "fashion"),
    ("rice", "grocery"),
    ("silk tie", "fashion"),  # never searched
    ("phone case", "electronics"),  # never searched
]


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path)


def _seed(db, env, tiny_encoder_dir) -> str:
    store = ArtifactStore(Path(env["INTENTLOOP_ARTIFACTS__DIR"]))
    version = synthetic_adapter(store, tiny_encoder_dir, seed=3, labels=_LABELS, max_length=16)
    manifest = json.loads((store.path(version) / MANIFEST).read_text())
    now = datetime(2025, 3, 1, tzinfo=UTC)
    searches = search_rows(_SEARCHES, now)
    with db.session() as s:
        record_version(s, version=version, manifest=manifest, uri=str(store.path(version)), run_id=None)
        s.execute(insert(SearchQuery), searches)
    return version


def test_eval_scores_distinct_queries_says_what_it_merged_and_reports_unseen(
    db, env, tiny_encoder_dir, tmp_path
):
    version = _seed(db, env, tiny_encoder_dir)
    gold = tmp_path / "gold.csv"
    gold.write_text("query,label\n" + "".join(f"{q},{lab}\n" for q, lab in _GOLD))

    done = subprocess.run(
        [sys.executable, "-m", "intentloop", "eval", "--gold", str(gold), "--version", version],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["version"], report["rows"], report["distinct_queries"]) == (version, 10, 8)
    assert report["scored_on"] == "distinct_queries" and report["n"] == 8
    assert report["by_row"]["n"] == 10 and 0.0 <= report["by_row"]["accuracy"] <= 1.0  # every file row
    merged = report["merged"]
    assert (merged["rows"], merged["queries"], merged["disagreeing_queries"]) == (2, 2, 1)
    assert merged["examples"] == [{"query": "red shoes", "labels": ["fashion", "grocery"], "used": "grocery"}]
    assert sum(report["per_class"][lab]["support"] for lab in _LABELS) == 8
    slices = report["slices"]
    assert {name: slices[name]["n"] for name in ("head", "torso", "tail", "unseen")} == {
        "head": 2,
        "torso": 2,
        "tail": 2,
        "unseen": 2,
    }
    assert slices["unseen"]["searches"] == 0
    # stderr: the merge line and our own INFO log; no FutureWarning, no "Loading weights" bar
    lines = done.stderr.splitlines()
    assert [line for line in lines if " INFO " not in line] == [
        "eval: 10 gold rows -> 8 distinct queries scored (2 duplicate rows merged; 1 queries disagree, "
        "the later row's label is used)"
    ]
    assert all(" INFO trainer." in line for line in lines[:-1]), lines
