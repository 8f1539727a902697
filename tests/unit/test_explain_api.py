"""``POST /v1/explain`` in-process: the version /v1/intent would use, 4xx limits, the concurrency cap."""

import asyncio
import threading

import httpx
import pytest
from serving_helpers import LABELS, make_host, make_versions, metric_value

from serving.adapters import SharedBase
from serving.api import create_api
from serving.settings import ExplainSettings, ServeSettings
from store.artifacts import ArtifactStore

SETTINGS = ServeSettings(
    max_query_chars=60,
    markets=["de"],
    canary_share=0.5,
    batch_wait_ms=1,
    explain=ExplainSettings(max_words=6, concurrency=1, budget=16, chunk=4),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("explain-api-artifacts"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def versions(store, tiny_encoder_dir):
    return make_versions(store, tiny_encoder_dir, [1, 2])


@pytest.fixture
def host(store, base, versions):
    h = make_host(store, base, markets=["de"], canary_share=0.5)
    h.assign("champion", versions[0])
    h.assign("canary", versions[1])
    return h


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def test_an_explanation_names_the_version_and_alias_intent_would_use(host, versions):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            out = []
            for session in ("s1", "s2", "s3", "s4", "s5", "s6"):
                intent = await c.post("/v1/intent", json={"query": "Red Running Shoe", "session_id": session})
                why = await c.post("/v1/explain", json={"query": "Red Running Shoe", "session_id": session})
                out.append((intent.json(), why))
            return out, (await c.get("/metrics")).text

    seen = set()
    answers, metrics = asyncio.run(go())
    # an explanation's texts ride in micro-batches but are not traffic: six queries served, six tallied
    served = sum(
        metric_value(metrics, "intentloop_predictions_total", alias=a) for a in ("champion", "canary")
    )
    assert served == 6
    assert host.tally.pending() == 6
    for intent, why in answers:
        assert why.status_code == 200, why.text
        body = why.json()
        assert (body["version"], body["alias"]) == (intent["version"], intent["alias"])
        assert body["label"] == intent["predictions"][0]["intent"] in LABELS
        assert body["probability"] == pytest.approx(
            intent["predictions"][0]["labels"][0]["probability"], abs=1e-5
        )
        assert [w["word"] for w in body["words"]] == ["Red", "Running", "Shoe"]
        assert [(w["start"], w["end"]) for w in body["words"]] == [(0, 3), (4, 11), (12, 16)]
        assert body["method"] == "occlusion" and body["model_calls"] > 0 and "members" not in body
        seen.add(body["alias"])
    assert seen == {"champion", "canary"}  # the canary split applies to explanations too


def test_label_method_and_chinese_words(host):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            return await c.post(
                "/v1/explain", json={"query": "红色连衣裙 长款", "label": "fashion", "method": "shap"}
            )

    r = asyncio.run(go())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "fashion" and body["method"] == "shap"
    assert [w["word"] for w in body["words"]] == ["红色", "连衣裙", "长款"]
    total = sum(w["attribution"] for w in body["words"])
    assert total == pytest.approx(body["probability"] - body["empty_probability"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "one two three four five six seven"}, 422, "at most 6"),
        ({"query": "x" * 61}, 422, "exceeds 60 characters"),
        ({"query": "   "}, 422, "non-whitespace"),
        ({"query": "red shoe", "method": "gradcam"}, 422, "unknown method"),
        ({"query": "red shoe", "label": "toys"}, 422, "not one of"),
        ({"query": "red shoe", "dimension": "intent_type"}, 422, "intent_type"),
        ({"query": "red shoe", "market": "fr"}, 422, "unknown market"),
        ({"query": "red shoe", "extra": 1}, 422, "extra"),
        ({}, 422, "query"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(host, body, status, message):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            return await c.post("/v1/explain", json=body)

    r = asyncio.run(go())
    assert r.status_code == status and message in r.text, r.text


def test_no_adapter_is_503(store, base):
    async def go():
        async with _client(create_api(make_host(store, base), SETTINGS, worker_id="t")) as c:
            return await c.post("/v1/explain", json={"query": "red shoe"})

    assert asyncio.run(go()).status_code == 503


def test_a_second_explanation_beyond_the_limit_is_429_and_the_first_still_answers(host):
    app = create_api(host, SETTINGS, worker_id="t")
    gate = threading.Event()
    holder = threading.Thread(target=lambda: app.state.batcher.call(gate.wait), daemon=True)

    async def go():
        async with _client(app) as c:
            holder.start()  # the model thread is busy: the first explanation waits in line for it
            first = asyncio.create_task(c.post("/v1/explain", json={"query": "red shoe"}))
            for _ in range(500):
                text = (await c.get("/metrics")).text
                if metric_value(text, "intentloop_explanations_running") == 1:
                    break
                await asyncio.sleep(0.01)
            second = await c.post("/v1/explain", json={"query": "blue dress"})
            intent = asyncio.create_task(c.post("/v1/intent", json={"query": "blue dress"}))
            gate.set()
            return await first, second, await intent, (await c.get("/metrics")).text

    first, second, intent, metrics = asyncio.run(go())
    assert second.status_code == 429 and second.headers["retry-after"] == "1" and "retry" in second.text
    assert first.status_code == 200 and intent.status_code == 200
    assert metric_value(metrics, "intentloop_explanations_total", outcome="busy") == 1
    assert metric_value(metrics, "intentloop_explanations_total", outcome="ok") == 1
    assert metric_value(metrics, "intentloop_explain_seconds_count", method="occlusion") == 1
    assert metric_value(metrics, "intentloop_explanations_running") == 0


def test_explanations_wait_for_the_workers_text_budget(host):
    """A leaky bucket of 8 texts/s: a shap explanation of ~30 texts cannot finish in under ~2.5 s
    (a lower bound the limiter enforces, whatever the machine), and answers correctly after it."""
    settings = SETTINGS.model_copy(update={"explain": ExplainSettings(texts_per_s=8, chunk=4, budget=64)})

    async def go():
        async with _client(create_api(host, settings, worker_id="t")) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            r = await c.post("/v1/explain", json={"query": "a b c d e f", "method": "shap"})
            return r, loop.time() - started

    r, elapsed = asyncio.run(go())
    assert r.status_code == 200, r.text
    scored = r.json()["model_calls"]
    assert scored > 16 and elapsed >= (scored - 8) / 8 * 0.9
