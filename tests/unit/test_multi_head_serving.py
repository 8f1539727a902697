"""A version with several heads is served as one version: every dimension from one model call,
chosen per request, a dimension the version lacks refused with a 422, hot swaps unchanged."""

import asyncio

import httpx
import numpy as np
import pytest
from serving_helpers import LABELS, TEXTS, make_host

from serving.adapters import SharedBase
from serving.api import create_api
from serving.host import Request
from serving.settings import ServeSettings
from serving.synthetic import synthetic_adapter
from store.artifacts import ArtifactStore
from store.dimensions import CATEGORY, INTENT_TYPE, INTENT_TYPES
from trainer.classifier import class_probabilities

SETTINGS = ServeSettings(max_batch=8, max_query_chars=80, batch_wait_ms=5, batch_max_queries=64)
HEADS = {INTENT_TYPE: list(INTENT_TYPES)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("multi-head-serving"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def versions(store, tiny_encoder_dir):
    multi = synthetic_adapter(store, tiny_encoder_dir, seed=5, labels=LABELS, max_length=16, heads=HEADS)
    single = synthetic_adapter(store, tiny_encoder_dir, seed=6, labels=LABELS, max_length=16)
    return multi, single


def _post(host, bodies):
    async def go():
        app = create_api(host, SETTINGS, worker_id="t")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
            return await asyncio.gather(*(c.post("/v1/intent", json=b) for b in bodies))

    return asyncio.run(go())


def test_every_head_answers_from_one_model_call(store, base, versions):
    multi, _ = versions
    host = make_host(store, base)
    host.assign("champion", multi)
    adapter = host._cache[multi]
    assert adapter.dimensions == {CATEGORY: tuple(LABELS), INTENT_TYPE: INTENT_TYPES}
    scores = base.score(adapter, TEXTS)
    # the category head is exactly what the single-head path computes
    alone = class_probabilities(
        adapter.module, base.tokenizer, TEXTS, device=base.device, lock=base.tokenizer_lock
    )
    np.testing.assert_allclose(scores.probs, alone, atol=1e-6)
    assert scores.heads[INTENT_TYPE].shape == (len(TEXTS), len(INTENT_TYPES))
    answer = host.predict(Request(TEXTS, top_k=2))
    for i, p in enumerate(answer.predictions):
        want = INTENT_TYPES[int(scores.heads[INTENT_TYPE][i].argmax())]
        assert p.dimensions is not None and p.dimensions[INTENT_TYPE].label == want
        assert len(p.dimensions[INTENT_TYPE].labels) == 2
    # every head's answers are counted for drift, each under its dimension
    counted = {dim: sum(c.values()) for (_, _, dim), c in host.tally._counts.items()}
    assert counted == {CATEGORY: len(TEXTS), INTENT_TYPE: len(TEXTS)}


def test_the_api_answers_the_dimensions_asked_for(store, base, versions):
    multi, single = versions
    host = make_host(store, base)
    host.assign("champion", multi)
    every, only_category, named, unknown = _post(
        host,
        [
            {"queries": TEXTS},
            {"queries": TEXTS, "dimensions": []},
            {"query": TEXTS[0], "dimensions": [INTENT_TYPE]},
            {"query": TEXTS[0], "dimensions": ["colour"]},
        ],
    )
    assert every.status_code == only_category.status_code == named.status_code == 200, every.text
    for p in every.json()["predictions"]:
        assert set(p["dimensions"]) == {INTENT_TYPE}
        assert p["dimensions"][INTENT_TYPE]["label"] in INTENT_TYPES
    assert all("dimensions" not in p for p in only_category.json()["predictions"])
    assert named.json()["predictions"][0]["dimensions"] == every.json()["predictions"][0]["dimensions"]
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]

    host.assign("champion", single)  # a hot swap to a single-head version
    plain, asked = _post(host, [{"queries": TEXTS}, {"query": TEXTS[0], "dimensions": [INTENT_TYPE]}])
    assert plain.status_code == 200 and all("dimensions" not in p for p in plain.json()["predictions"])
    assert asked.status_code == 422 and "intent_type" in asked.json()["detail"]
