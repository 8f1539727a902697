"""A multi-head version through the loop: trained from both dimensions' labels, gated per
dimension, promoted and served as one version; a candidate that would drop a dimension its
champion serves is refused."""

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from training_helpers import training_env

from intentloop.jobs import train_and_maybe_promote
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from intentloop.stack import Endpoints
from store.artifacts import ArtifactStore
from store.dimensions import ASK, BUY, CATEGORY, HELP, INTENT_TYPE
from store.labels import replace_label_distributions
from store.models import SearchQuery
from trainer.artifact import load_for_inference

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_PRODUCTS = {
    "fashion": ["red shoe", "blue dress", "denim jacket"],
    "electronics": ["usb cable", "phone charger", "hdmi adapter"],
}
_FORMS = {BUY: "{p} {n}", ASK: "how to clean {p} {n}", HELP: "refund broken {p} {n}"}


def _row(query: str, label: str) -> dict:
    return {
        "norm_text": query,
        "label": label,
        "confidence": 0.9,
        "evidence": 3.0,
        "distribution": {label: 0.9},
        "abstained": False,
        "reason": "",
        "method": "majority",
        "searches": 2,
        "weight": 0.75,
    }


def _seed(db) -> None:
    rng = random.Random(7)
    queries: dict[str, tuple[str, str]] = {}
    while len(queries) < 240:
        label = sorted(_PRODUCTS)[len(queries) % 2]
        kind = (BUY, ASK, HELP)[len(queries) % 3]
        text = _FORMS[kind].format(p=rng.choice(_PRODUCTS[label]), n=rng.randint(1, 999))
        queries.setdefault(text, (label, kind))
    now = datetime(2025, 3, 1, tzinfo=UTC)
    with db.session() as s:
        replace_label_distributions(s, [_row(q, c) for q, (c, _) in queries.items()], CATEGORY)
        replace_label_distributions(s, [_row(q, t) for q, (_, t) in queries.items()], INTENT_TYPE)
        s.execute(
            insert(SearchQuery),
            [
                {
                    "query_id": f"{q}#{k}",
                    "session_id": "s",
                    "ts": now,
                    "text": q,
                    "norm_text": q,
                    "locale": "en-US",
                    "shown": [],
                }
                for q in queries
                for k in range(2)
            ],
        )


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(
        monkeypatch,
        pg_url,
        redis_url,
        redis_prefix,
        tiny_encoder_dir,
        tmp_path,
        INTENTLOOP_TRAIN__EPOCHS="6",
        INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1="0",
        INTENTLOOP_TRAIN__GATE__MIN_ACCURACY="0",
        INTENTLOOP_TRAIN__GATE__TFIDF_BASELINE="false",
        INTENTLOOP_TRAIN__FUSION__ENABLED="false",
    )


def _runtime(env, dimensions: list[str]) -> Runtime:
    settings = Settings()
    settings = settings.model_copy(
        update={"taxonomy": settings.taxonomy.model_copy(update={"dimensions": dimensions})}
    )
    endpoints = Endpoints(
        env["INTENTLOOP_KAFKA__BOOTSTRAP"], env["INTENTLOOP_POSTGRES__URL"], env["INTENTLOOP_REDIS__URL"]
    )
    return Runtime(settings, endpoints)


def test_a_multi_head_version_is_trained_gated_and_kept(db, env, tmp_path, tiny_encoder_dir):
    _seed(db)
    rt = _runtime(env, [CATEGORY, INTENT_TYPE])
    first = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    gate = first["gate"]
    assert gate["blessed"] and first["promoted"], gate["reasons"]
    assert first["snapshot"]["heads"][INTENT_TYPE]["labels"] == sorted([ASK, BUY, HELP])
    assert first["metrics"]["heads"][INTENT_TYPE]["val_macro_f1"] > 0.5  # scored on its validation rows
    scores = gate["scores"]
    assert {"intent_type/candidate", "intent_type/label_prior"} <= set(scores)
    assert scores["intent_type/candidate"]["macro_f1"] > scores["intent_type/label_prior"]["macro_f1"]
    assert any(r.startswith("macro_f1 ") and "beats intent_type label_prior" in r for r in gate["reasons"])
    assert gate["eval_set"]["dimensions"][INTENT_TYPE]["rows"] == scores["intent_type/candidate"]["n"]
    path, _ = ArtifactStore(tmp_path / "artifacts").fetch(first["version"])
    loaded = load_for_inference(tiny_encoder_dir, path)
    assert loaded.head_labels[INTENT_TYPE] == sorted([ASK, BUY, HELP])

    # No intent-type labels this time (an aggregation that labelled none): the candidate has no
    # head for a dimension its champion serves, and the gate refuses to take it away ...
    with db.session() as s:
        replace_label_distributions(s, [], INTENT_TYPE)
    rt = _runtime(env, [CATEGORY, INTENT_TYPE])
    second = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    assert "heads" not in second["snapshot"]
    assert not second["gate"]["blessed"] and not second["promoted"]
    assert any("the champion serves it" in r for r in second["gate"]["reasons"]), second["gate"]["reasons"]

    # ... unless the team configured the dimension out: then dropping it is what was asked for.
    rt = _runtime(env, [CATEGORY])
    third = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    assert third["gate"]["blessed"] and third["promoted"], third["gate"]["reasons"]
