"""The HTTP API in-process: contract, 4xx on bad input, micro-batching, metrics, admin auth."""

import asyncio

import httpx
import pytest
from serving_helpers import LABELS, make_host, make_versions, metric_value

from serving.adapters import SharedBase
from serving.api import create_api
from serving.settings import ServeSettings
from store.artifacts import ArtifactStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("api-artifacts"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def versions(store, tiny_encoder_dir):
    return make_versions(store, tiny_encoder_dir, [1, 2])


SETTINGS = ServeSettings(
    max_batch=8, max_query_chars=40, markets=["de"], batch_wait_ms=30, batch_max_queries=64
)


@pytest.fixture
def host(store, base, versions):
    h = make_host(store, base, markets=["de"])
    h.assign("champion", versions[0])
    return h


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def _run(coro):
    return asyncio.run(coro)


def test_single_and_batch_name_their_version(host, versions):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            one = await c.post("/v1/intent", json={"query": "Red Shoes", "top_k": 2})
            many = await c.post("/v1/intent", json={"queries": ["a b", "c d", "e"], "abstain_below": 1.0})
            return one, many

    one, many = _run(go())
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["version"] == versions[0] and body["alias"] == "champion" and body["market"] is None
    (pred,) = body["predictions"]
    assert pred["query"] == "Red Shoes" and pred["version"] == versions[0] and len(pred["labels"]) == 2
    assert pred["intent"] == pred["labels"][0]["label"] in LABELS and pred["abstained"] is False
    mb = many.json()
    assert [p["query"] for p in mb["predictions"]] == ["a b", "c d", "e"]
    assert all(p["abstained"] and p["intent"] is None for p in mb["predictions"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"queries": []}, 422, "queries"),
        ({"query": "a", "queries": ["b"]}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"query": ""}, 422, "query"),
        ({"query": "   "}, 422, "non-whitespace"),
        ({"queries": ["q"] * 9}, 413, "limit of 8"),
        ({"query": "x" * 41}, 422, "exceed 40 characters"),
        ({"query": "a", "top_k": 0}, 422, "top_k"),
        ({"query": "a", "top_k": 51}, 422, "top_k"),
        ({"query": "a", "abstain_below": 1.5}, 422, "abstain_below"),
        ({"query": "a", "market": "fr"}, 422, "unknown market 'fr'"),
        ({"query": "a", "market": "no spaces"}, 422, "market"),
        ({"query": "a", "qurey": "typo"}, 422, "qurey"),
        ({"query": 5}, 422, "query"),
        ([1, 2], 422, "dict"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(host, body, status, message):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            return await c.post("/v1/intent", json=body)

    r = _run(go())
    assert r.status_code == status and message in r.text, r.text


def test_lone_surrogates_and_broken_json_are_4xx(host):
    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            sur = await c.post(
                "/v1/intent", content=b'{"query": "\\ud800x"}', headers={"content-type": "application/json"}
            )
            broken = await c.post(
                "/v1/intent", content=b'{"query": ', headers={"content-type": "application/json"}
            )
            return sur, broken

    sur, broken = _run(go())
    assert sur.status_code == 422 and "unicode" in sur.text
    assert broken.status_code == 422


def test_not_ready_is_503_until_an_adapter_is_loaded(store, base, versions):
    host = make_host(store, base)

    async def go():
        async with _client(create_api(host, SETTINGS.model_copy(update={"markets": []}), worker_id="t")) as c:
            r1 = await c.post("/v1/intent", json={"query": "a"})
            ready1 = await c.get("/readyz")
            host.assign("champion", versions[1])
            r2 = await c.post("/v1/intent", json={"query": "a"})
            ready2 = await c.get("/readyz")
            return r1, ready1, r2, ready2

    r1, ready1, r2, ready2 = _run(go())
    assert r1.status_code == 503 and "promote" in r1.text and ready1.status_code == 503
    assert r2.json()["version"] == versions[1] and ready2.json()["version"] == versions[1]


def test_concurrent_requests_are_micro_batched(host, versions):
    calls: list[int] = []
    run_group = host.run_group

    def counting(reqs):
        calls.append(len(reqs))
        return run_group(reqs)

    host.run_group = counting  # type: ignore[method-assign]

    async def go():
        async with _client(create_api(host, SETTINGS, worker_id="t")) as c:
            rs = await asyncio.gather(
                *(c.post("/v1/intent", json={"query": f"query {i}"}) for i in range(40))
            )
            metrics = await c.get("/metrics")
            return rs, metrics

    rs, metrics = _run(go())
    assert all(r.status_code == 200 and r.json()["version"] == versions[0] for r in rs)
    assert sum(calls) == 40 and len(calls) < 40 and max(calls) > 1
    text = metrics.text
    assert metric_value(text, "intentloop_batch_requests_count") == len(calls)
    assert metric_value(text, "intentloop_batch_queries_sum") == 40
    assert metric_value(text, "intentloop_http_requests_total", path="/v1/intent", status="200") == 40
    assert metric_value(text, "intentloop_served_version", alias="champion", version=versions[0]) == 1
    assert metric_value(text, "intentloop_http_request_seconds_count", path="/v1/intent") == 40


def test_a_batch_is_one_group_and_never_split(host):
    calls: list[list[int]] = []
    run_group = host.run_group

    def recording(reqs):
        calls.append([len(r.texts) for r in reqs])
        return run_group(reqs)

    host.run_group = recording  # type: ignore[method-assign]
    settings = SETTINGS.model_copy(update={"batch_max_queries": 10})

    async def go():
        async with _client(create_api(host, settings, worker_id="t")) as c:
            return await asyncio.gather(
                *(c.post("/v1/intent", json={"queries": ["q"] * 6}) for _ in range(5))
            )

    assert all(r.status_code == 200 for r in _run(go()))
    assert sorted(n for call in calls for n in call) == [6] * 5 and all(sum(c) <= 10 for c in calls)


def test_admin_endpoints_need_the_token(host):
    from serving.api import Admin

    admin = Admin(db=None, registry=None, token="s3cret")  # type: ignore[arg-type]  # never reached

    async def go(adm):
        async with _client(create_api(host, SETTINGS, worker_id="t", admin=adm)) as c:
            out = []
            for path in ("/admin/champion/promote", "/admin/canary/start"):
                body = {"version": "abc"}
                out.append((await c.post(path, json=body)).status_code)
                out.append(
                    (await c.post(path, json=body, headers={"Authorization": "Bearer nope"})).status_code
                )
                out.append(
                    (await c.post(path, json=body, headers={"Authorization": "Basic czNjcmV0"})).status_code
                )
            for path in ("/admin/champion/rollback", "/admin/canary/promote", "/admin/canary/rollback"):
                out.append((await c.post(path, json={})).status_code)
            return out

    assert _run(go(admin)) == [401, 403, 401, 401, 403, 401, 401, 401, 401]
    disabled = _run(go(None))
    assert disabled[1] == 403 and disabled[0] == 401


def test_openapi_documents_the_api(host):
    app = create_api(host, SETTINGS, worker_id="t")
    spec = app.openapi()
    assert {"/v1/intent", "/healthz", "/readyz", "/metrics", "/admin/champion/promote"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
