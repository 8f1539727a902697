"""A fused version is served like any version: members in the micro-batch, hot swap, canary, refusals."""

import asyncio
import logging
import shutil
import threading

import httpx
import numpy as np
import pytest
from fused_helpers import edit_fusion, members_directly, queries_with_a_known_one, republish
from serving_helpers import LABELS, TEXTS, make_host, make_versions, metric_value

from serving.adapters import SharedBase
from serving.api import create_api
from serving.exceptions import AdapterRefusedError, RefusalKind
from serving.host import Request
from serving.settings import ServeSettings
from serving.synthetic import synthetic_fused_adapter
from store.artifacts import ArtifactStore

SETTINGS = ServeSettings(max_batch=8, max_query_chars=80, batch_wait_ms=5, batch_max_queries=64)
PLAIN_KEYS = {"query", "intent", "abstained", "labels", "version"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("fused-serving"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def plain(store, tiny_encoder_dir):
    return make_versions(store, tiny_encoder_dir, [1])[0]


@pytest.fixture(scope="module")
def fused(store, tiny_encoder_dir):
    return synthetic_fused_adapter(store, tiny_encoder_dir, seed=11, labels=LABELS, max_length=16)


def _post(host, bodies):
    async def go():
        app = create_api(host, SETTINGS, worker_id="t")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
            return await asyncio.gather(*(c.post("/v1/intent", json=b) for b in bodies))

    return asyncio.run(go())


def _by_label(scores):
    """Probabilities in ``LABELS`` order from a response's (or prediction's) label list."""
    got = (
        {s["label"]: s["probability"] for s in scores}
        if scores and isinstance(scores[0], dict)
        else dict(scores)
    )
    return np.array([got[label] for label in LABELS])


def test_members_true_shows_every_member_and_its_fusion_weight(store, base, fused):
    path, _ = store.fetch(fused)
    texts = queries_with_a_known_one(path)
    members, expected, fusion = members_directly(base, path, texts)
    weights = fusion.member_weights()
    assert min(weights.values()) > 0  # every member counts, so a misaligned one would show
    host = make_host(store, base)
    host.assign("champion", fused)
    asked, not_asked = _post(
        host, [{"queries": texts, "top_k": 4, "members": True}, {"queries": texts, "top_k": 4}]
    )
    assert asked.status_code == not_asked.status_code == 200, asked.text
    kinds = {"lora": "adapter", "tfidf": "lexical", "memory": "memory"}
    for i, p in enumerate(asked.json()["predictions"]):
        assert p["version"] == fused and np.allclose(_by_label(p["labels"]), expected[i], atol=1e-5)
        assert {m["name"] for m in p["members"]} == set(fusion.members)
        for m in p["members"]:
            assert m["weight"] == pytest.approx(weights[m["name"]], rel=1e-12)
            assert m["kind"] == kinds[m["name"]]
            assert np.allclose(_by_label(m["labels"]), members[m["name"]][i], atol=1e-5), m["name"]
            assert m["voted"] is (m["name"] != "memory" or i == len(texts) - 1)
    for p, q in zip(not_asked.json()["predictions"], asked.json()["predictions"], strict=True):
        assert set(p) == PLAIN_KEYS and p["labels"] == q["labels"]


def test_a_plain_version_answers_as_before_even_when_members_are_asked_for(store, base, plain):
    host = make_host(store, base)
    host.assign("champion", plain)
    asked, not_asked = _post(host, [{"queries": TEXTS, "members": True}, {"queries": TEXTS}])
    assert asked.json() == not_asked.json()
    assert set(asked.json()) == {"version", "alias", "market", "predictions"}
    assert all(set(p) == PLAIN_KEYS for p in asked.json()["predictions"])


def test_one_micro_batch_scores_every_request_of_a_fused_version(store, base, fused):
    path, _ = store.fetch(fused)
    texts = queries_with_a_known_one(path)
    members, expected, _ = members_directly(base, path, texts)
    host = make_host(store, base)
    host.assign("champion", fused)
    requests = [
        Request(texts[:2], top_k=4, members=True),
        Request(texts[2:], top_k=4),
        Request(texts, top_k=4),
    ]
    answers = host.run_group(requests)
    rows = [range(0, 2), range(2, len(texts)), range(len(texts))]
    for req, answer, idx in zip(requests, answers, rows, strict=True):
        assert not isinstance(answer, Exception) and answer.version == fused
        for p, i in zip(answer.predictions, idx, strict=True):
            assert np.allclose(_by_label(p.labels), expected[i], atol=1e-5)
            assert (p.members is not None) is req.members
    lexical = next(m for m in answers[0].predictions[1].members if m.kind == "lexical")
    assert np.allclose(_by_label(lexical.labels), members["tfidf"][1], atol=1e-6)


def test_swaps_between_plain_and_fused_never_fail_or_mix(store, base, plain, fused):
    """plain -> fused -> plain ... while clients race: each answer is exactly its named version's."""
    host = make_host(store, base)
    host.assign("champion", fused)
    host.assign("champion", plain)  # both loaded: the flips below are warm and race a lot
    expected = {v: base.score(host._cache[v], TEXTS) for v in (plain, fused)}
    seen = {plain: 0, fused: 0}
    answered = threading.Condition()
    problems: list[str] = []
    stop = threading.Event()

    def check(answer, req):
        want = expected[answer.version]
        for i, p in enumerate(answer.predictions):
            if p.version != answer.version:
                problems.append(f"prediction of {p.version} in a {answer.version} answer")
            if not np.allclose(_by_label(p.labels), want.probs[i], atol=1e-5):
                problems.append(f"{answer.version} answered with another model's probabilities")
            if (p.members is not None) != (req.members and answer.version == fused):
                problems.append(f"members {p.members is not None} from {answer.version}")

    def client() -> None:
        while not stop.is_set():
            reqs = [Request(TEXTS, top_k=4, members=True), Request(TEXTS[:2], top_k=4)]
            for answer, req in zip(host.run_group(reqs), reqs, strict=True):
                if isinstance(answer, Exception):
                    problems.append(f"failed: {answer!r}")
                    continue
                check(answer, req)
                with answered:
                    seen[answer.version] += 1
                    answered.notify_all()

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(60):
        target = fused if i % 2 == 0 else plain
        with answered:
            before = seen[target]
        assert host.assign("champion", target) == "warm"
        with answered:  # until a batch routed after this flip has answered
            assert answered.wait_for(lambda t=target, b=before: seen[t] > b, timeout=30), f"flip {i}"
    stop.set()
    for t in threads:
        t.join()
    assert problems == [] and host.swaps == 62 and host.loads == 2
    assert seen[plain] > 0 and seen[fused] > 0


def test_canary_and_rollback_treat_a_fused_version_like_any(store, base, plain, fused):
    host = make_host(store, base, canary_share=0.5)
    host.assign("champion", plain)
    host.assign("canary", fused)
    routed = {s: host.predict(Request(["q"], session=s, members=True)) for s in (f"s{i}" for i in range(200))}
    by_alias = {a.alias: {b.version for b in routed.values() if b.alias == a.alias} for a in routed.values()}
    assert by_alias == {"champion": {plain}, "canary": {fused}}
    assert all((a.predictions[0].members is not None) is (a.alias == "canary") for a in routed.values())
    # graduate the fused canary, then roll back: a warm flip each way, no reload
    assert [host.assign("canary", None), host.assign("champion", fused), host.assign("champion", plain)] == [
        "cleared",
        "warm",
        "warm",
    ]
    assert host.loads == 2 and host.predict(Request(["q"])).version == plain


def _corrupt_memory(store, version, tmp):
    p = store.path(version) / "memory.json"
    p.write_bytes(p.read_bytes().replace(b'"alpha":2.0', b'"alpha":9.0'))  # still valid JSON
    return version


def _fusion_labels_differ(store, version, tmp):
    return republish(store, version, tmp, edit_fusion(lambda f: f.update(labels=list(reversed(f["labels"])))))


@pytest.mark.parametrize(
    ("damage", "kind", "message"),
    [
        (_corrupt_memory, RefusalKind.INTEGRITY, "sha256 mismatch for memory.json"),
        (_fusion_labels_differ, RefusalKind.INVALID, "fusion.json labels differ"),
    ],
    ids=["memory-bytes-changed", "fusion-labels-differ"],
)
def test_a_bad_fused_version_is_refused_and_the_old_keeps_serving(
    store, base, plain, fused, tmp_path, damage, kind, message, caplog
):
    mine = ArtifactStore(tmp_path / "artifacts")
    for v in (plain, fused):
        shutil.copytree(store.path(v), mine.path(v))
    host = make_host(mine, base)
    host.assign("champion", plain)
    bad = damage(mine, fused, tmp_path)
    with caplog.at_level(logging.ERROR, logger="serving.host"), pytest.raises(AdapterRefusedError) as err:
        host.assign("champion", bad)
    assert err.value.kind == kind and message in err.value.reason
    assert host.version() == plain and host.predict(Request(TEXTS)).version == plain
    text = host.metrics.exposition().decode()
    assert metric_value(text, "intentloop_adapter_refusals_total", reason=str(kind)) == 1


def test_the_openapi_document_describes_members(store, base):
    schema = create_api(make_host(store, base), SETTINGS, worker_id="t").openapi()["components"]["schemas"]
    assert schema["IntentRequest"]["properties"]["members"]["default"] is False
    assert "fused" in schema["IntentRequest"]["properties"]["members"]["description"]
    member = schema["MemberPrediction"]
    assert set(member["required"]) == {"name", "kind", "weight", "voted", "labels"}
    assert "members" in schema["QueryPrediction"]["properties"]
    assert "members" not in schema["QueryPrediction"].get("required", [])
