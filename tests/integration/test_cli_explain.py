"""`intentloop explain` as an operator runs it (a child process): one query, then the per-label view.

The champion comes from the registry's audit trail, as /v1/intent's would; the per-label view samples
the searches stored in Postgres, is saved where the dashboard reads it, and ``--stored`` prints it
back without a model. Output holds no dependency warning or weight-loading bar.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from training_helpers import search_rows, training_env

from serving.synthetic import synthetic_adapter
from store.artifacts import MANIFEST, ArtifactStore
from store.explanations import latest_global_view
from store.models import SearchQuery
from store.registry import RedisRegistry
from store.versions import promote, record_version

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_LABELS = ["electronics", "fashion", "grocery"]
_SEARCHES = {"usb cable": 5, "red shoes": 4, "oat milk": 3, "红色连衣裙 长款": 2, "hdmi adapter": 1}


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path)


def _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir) -> str:
    store = ArtifactStore(Path(env["INTENTLOOP_ARTIFACTS__DIR"]))
    version = synthetic_adapter(store, tiny_encoder_dir, seed=3, labels=_LABELS, max_length=16)
    manifest = json.loads((store.path(version) / MANIFEST).read_text())
    now = datetime.now(UTC) - timedelta(hours=1)
    searches = search_rows(_SEARCHES, now)
    with db.session() as s:
        record_version(s, version=version, manifest=manifest, uri=str(store.path(version)), run_id=None)
        s.execute(insert(SearchQuery), searches)
    promote(db, RedisRegistry(redis_url, prefix=redis_prefix), version, actor="test", reason="explain")
    return version


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intentloop", "explain", *args], capture_output=True, text=True, timeout=300
    )


def test_one_query_then_the_per_label_view_stored_for_the_dashboard(
    db, env, redis_url, redis_prefix, tiny_encoder_dir
):
    version = _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir)

    one = _cli("Red Running Shoes", "--json", "--method", "shap")
    assert one.returncode == 0, one.stderr
    body = json.loads(one.stdout)
    assert body["version"] == version and body["alias"] == "champion" and body["method"] == "shap"
    assert [w["word"] for w in body["words"]] == ["Red", "Running", "Shoes"]
    total = sum(w["attribution"] for w in body["words"])
    assert total == pytest.approx(body["probability"] - body["empty_probability"], abs=1e-5)
    assert "Warning" not in one.stderr and "Loading weights" not in one.stderr

    table = _cli("红色连衣裙 长款", "--label", "fashion")
    assert table.returncode == 0, table.stderr
    assert "'fashion'" in table.stdout and "红色" in table.stdout and "连衣裙" in table.stdout

    too_long = _cli(" ".join(["word"] * 17))
    assert too_long.returncode != 0 and "at most 16" in too_long.stderr

    view = _cli("--quiet")
    assert view.returncode == 0, view.stderr
    with db.session() as s:
        stored = latest_global_view(s)
    assert stored is not None and stored.version == version and stored.method == "occlusion"
    assert {e.query for e in stored.examples} == set(_SEARCHES)
    assert stored.examples[0].query == "usb cable" and stored.examples[0].searches == 5
    some_label = stored.words[0].label
    assert f"\n{some_label}: words and phrases" in view.stdout

    again = _cli("--stored", "--label", some_label, "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["version"] == version and {w["label"] for w in data["words"]} == {some_label}

    missing = _cli("--stored", "--label", "toys")
    assert missing.returncode != 0 and "no sampled query was given 'toys'" in missing.stderr
