"""Property-based fuzzing of the inference API: whatever arrives, the answer is never a 5xx.

schemathesis generates requests from the app's own OpenAPI schema (valid and invalid bodies for
every operation, admin ones included); a second property posts arbitrary JSON near the request
shape. Both run in-process against a real host with a tiny adapter loaded. schemathesis' pytest
plugin does not run under pytest 9 (``Function`` has no ``_nodeid``), so its per-operation
Hypothesis strategies are driven by ``@given`` directly.
"""

import asyncio
import json

import httpx
import pytest
import schemathesis
from fuzz_strategies import JSON_VALUES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from serving_helpers import make_host, make_versions

from serving.adapters import SharedBase
from serving.api import Admin, create_api
from serving.settings import ServeSettings
from store.artifacts import ArtifactStore

SETTINGS = ServeSettings(max_batch=16, max_query_chars=200, markets=["de"], batch_wait_ms=0)


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_encoder_dir):
    store = ArtifactStore(tmp_path_factory.mktemp("fuzz-artifacts"))
    (version,) = make_versions(store, tiny_encoder_dir, [5])
    host = make_host(store, SharedBase(tiny_encoder_dir), markets=["de"], canary_share=0.5)
    host.assign("champion", version)
    host.assign("canary", version)
    admin = Admin(db=None, registry=None, token="fuzz-token")  # type: ignore[arg-type]  # 401/403 first
    return create_api(host, SETTINGS, worker_id="fuzz", admin=admin)


OPERATIONS = [
    ("POST", "/v1/intent"),
    ("POST", "/v1/explain"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/admin/champion/promote"),
    ("POST", "/admin/champion/rollback"),
    ("POST", "/admin/canary/start"),
    ("POST", "/admin/canary/promote"),
    ("POST", "/admin/canary/rollback"),
]


def test_the_fuzzed_operations_are_all_of_the_schema(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ops == set(OPERATIONS)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_5xx(app, method, path, mode):
    if mode == GenerationMode.NEGATIVE and method == "GET":
        pytest.skip("a GET without parameters has no invalid form")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    examples = {"/v1/intent": 150, "/v1/explain": 60}.get(path, 15)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        response = case.call()
        assert response.status_code < 500, f"{method} {path} {case.body!r} -> {response.status_code}"

    check()


FIELDS = st.sampled_from(["query", "queries", "top_k", "abstain_below", "market", "session_id", "x"])
NEAR_REQUESTS = st.dictionaries(
    FIELDS, JSON_VALUES | st.lists(st.text(max_size=300), max_size=20), max_size=5
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=NEAR_REQUESTS | JSON_VALUES, ascii_only=st.booleans())
def test_arbitrary_json_never_5xx(app, body, ascii_only):
    # Python's json writes Infinity and lone surrogates (as \\ud800 escapes, or as invalid UTF-8 bytes).
    text = json.dumps(body, ensure_ascii=ascii_only)
    payload = text.encode("utf-8", "surrogatepass")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as c:
            headers = {"content-type": "application/json"}
            return await c.post("/v1/intent", content=payload, headers=headers)

    r = asyncio.run(go())
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        data = r.json()
        assert {p["version"] for p in data["predictions"]} == {data["version"]}
