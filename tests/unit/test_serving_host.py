"""The model host: shared-base loading, atomic swaps, warm rollback, refusals, routing."""

import json
import logging
import threading

import numpy as np
import pytest
from serving_helpers import LABELS, TEXTS, make_host, make_versions, metric_value, republish_with_manifest

from serving.adapters import SharedBase
from serving.exceptions import AdapterRefusedError, NotReadyError, RefusalKind, UnknownMarketError
from serving.host import Request
from serving.synthetic import synthetic_adapter
from store.artifacts import MANIFEST, ArtifactStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("serving-artifacts"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def versions(store, tiny_encoder_dir):
    return make_versions(store, tiny_encoder_dir, [1, 2, 3])


def _probs(host, version, texts=TEXTS):
    return host.base.predict_proba(host._cache[version], texts)


def test_adapters_share_the_base_and_leave_it_untouched(store, base, versions):
    before = {k: v.clone() for k, v in base.encoder.state_dict().items()}
    host = make_host(store, base, markets=["de"])
    host.assign("champion", versions[0])
    first = _probs(host, versions[0])
    host.assign("champion.de", versions[1])
    a, b = host._cache[versions[0]], host._cache[versions[1]]
    assert base.shares_base(a) and base.shares_base(b)
    qa = a.module.encoder.encoder.layer[0].attention.self.query.weight
    qb = b.module.encoder.encoder.layer[0].attention.self.query.weight
    qbase = base.encoder.encoder.layer[0].attention.self.query.weight
    assert qa is not qbase and qb is not qbase and not torch_equal(qa, qb)
    for k, v in base.encoder.state_dict().items():
        assert torch_equal(v, before[k]), k
    np.testing.assert_array_equal(_probs(host, versions[0]), first)  # loading b changed nothing of a


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


def test_rollback_flips_back_without_a_reload(store, base, versions):
    host = make_host(store, base, keep_warm=1)
    v1, v2, v3 = versions
    assert [host.assign("champion", v) for v in (v1, v2, v1)] == ["loaded", "loaded", "warm"]
    assert host.loads == 2 and host.version() == v1
    assert host.assign("champion", v1) == "unchanged"
    assert host.assign("champion", v3) == "loaded"  # v2 falls out of the warm set (keep_warm 1)
    assert host.warm_versions() == sorted([v1, v3])
    text = host.metrics.exposition().decode()
    assert metric_value(text, "intentloop_swaps_total", alias="champion", kind="warm") == 1
    assert metric_value(text, "intentloop_swaps_total", alias="champion", kind="loaded") == 3
    assert metric_value(text, "intentloop_served_version", alias="champion", version=v3) == 1
    assert metric_value(text, "intentloop_served_version", alias="champion", version=v1) == 0
    cold = make_host(store, base, keep_warm=0)
    assert [cold.assign("champion", v) for v in (v1, v2, v1)] == ["loaded", "loaded", "loaded"]


def _corrupt(store, version, tmp):
    p = store.path(version) / "head.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    return version


def _truncate(store, version, tmp):
    p = store.path(version) / "adapter_model.safetensors"
    p.write_bytes(p.read_bytes()[:100])
    return version


def _no_labels(store, version, tmp):
    return republish_with_manifest(store, version, tmp, labels=[])


def _labels_edited_in_place(store, version, tmp):
    m = store.path(version) / MANIFEST
    data = json.loads(m.read_text())
    data["labels"] = list(reversed(data["labels"]))  # same files, different meaning
    m.write_text(json.dumps(data))
    return version


@pytest.mark.parametrize(
    ("damage", "kind", "message"),
    [
        (_corrupt, RefusalKind.INTEGRITY, "sha256 mismatch"),
        (_truncate, RefusalKind.INTEGRITY, "sha256 mismatch"),
        (_no_labels, RefusalKind.INVALID, "no usable label map"),
        (_labels_edited_in_place, RefusalKind.INTEGRITY, "changed after publishing"),
        (lambda s, v, t: "0123456789abcdef", RefusalKind.MISSING, "not found"),
    ],
    ids=["corrupt", "truncated", "no-label-map", "label-map-edited", "missing"],
)
def test_a_bad_artifact_is_refused_and_the_old_version_keeps_serving(
    tmp_path, tiny_encoder_dir, base, damage, kind, message, caplog
):
    store = ArtifactStore(tmp_path / "artifacts")
    good, victim = make_versions(store, tiny_encoder_dir, [1, 2])
    host = make_host(store, base)
    host.assign("champion", good)
    bad = damage(store, victim, tmp_path)
    with caplog.at_level(logging.ERROR, logger="serving.host"), pytest.raises(AdapterRefusedError) as err:
        host.assign("champion", bad)
    assert err.value.kind == kind and message in err.value.reason
    assert host.version() == good and host.predict(Request(TEXTS)).version == good
    assert host.refused[bad].kind == kind
    assert any(bad in r.getMessage() and message in r.getMessage() for r in caplog.records)
    text = host.metrics.exposition().decode()
    assert metric_value(text, "intentloop_adapter_refusals_total", reason=str(kind)) == 1


def test_an_adapter_of_another_base_model_is_refused(tmp_path, tiny_encoder_dir, tiny_encoder_factory, base):
    store = ArtifactStore(tmp_path / "artifacts")
    (good,) = make_versions(store, tiny_encoder_dir, [1])
    other = synthetic_adapter(store, tiny_encoder_factory(48), seed=1, labels=LABELS)
    host = make_host(store, base)
    host.assign("champion", good)
    with pytest.raises(AdapterRefusedError) as err:
        host.assign("champion", other)
    assert err.value.kind == RefusalKind.INCOMPATIBLE and "hidden_size 48" in err.value.reason
    assert host.version() == good


def test_no_request_mixes_versions_during_swaps(store, base, versions):
    """Every answer's probabilities are exactly those of the version it names, while swaps race."""
    v1, v2, _ = versions
    host = make_host(store, base)
    host.assign("champion", v2)
    host.assign("champion", v1)  # both loaded: flips below are warm and fast, so they race a lot
    expected = {v: _probs(host, v) for v in (v1, v2)}
    seen: dict[str, int] = {v1: 0, v2: 0}
    answered = threading.Condition()  # notified with every answer counted in ``seen``
    problems: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            for answer in host.run_group([Request(TEXTS, top_k=4), Request(TEXTS[:2], top_k=4)]):
                assert not isinstance(answer, Exception)
                with answered:
                    seen[answer.version] += 1
                    answered.notify_all()
                want = expected[answer.version]
                for i, p in enumerate(answer.predictions):
                    if p.version != answer.version:
                        problems.append(f"prediction of {p.version} in a {answer.version} answer")
                    got = dict(p.labels)
                    for j, label in enumerate(LABELS):
                        if abs(got[label] - want[i, j]) > 1e-5:
                            problems.append(f"{answer.version} answered with other weights")

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(200):
        target = v2 if i % 2 == 0 else v1
        with answered:
            before = seen[target]
        host.assign("champion", target)
        # Until a batch routed after this flip has answered (the routing held the other version
        # before it); the other clients' batches keep racing the flips.
        with answered:
            assert answered.wait_for(lambda t=target, b=before: seen[t] > b, timeout=30), f"flip {i}"
    stop.set()
    for t in threads:
        t.join()
    assert problems == []
    assert seen[v1] > 0 and seen[v2] > 0 and host.swaps == 202


def test_canary_gets_its_share_sticky_per_session(store, base, versions):
    v1, v2, _ = versions
    host = make_host(store, base, canary_share=0.3)
    host.assign("champion", v1)
    sessions = [f"s{i}" for i in range(2000)]
    assert {host.predict(Request(["q"], session=s)).version for s in sessions[:50]} == {v1}
    host.assign("canary", v2)
    routed = {s: host.predict(Request(["q"], session=s)) for s in sessions}
    canary = [s for s, a in routed.items() if a.alias == "canary"]
    assert all(routed[s].version == v2 for s in canary)
    assert 0.25 < len(canary) / len(sessions) < 0.35
    again = {s: host.predict(Request(["other query"], session=s)).alias for s in sessions[:300]}
    assert again == {s: routed[s].alias for s in sessions[:300]}  # sticky: the query does not matter
    assert host.assign("canary", None) == "cleared"
    assert {host.predict(Request(["q"], session=s)).alias for s in canary} == {"champion"}


def test_markets_route_to_their_own_adapters(store, base, versions):
    v1, v2, _ = versions
    host = make_host(store, base, markets=["de"])
    with pytest.raises(NotReadyError):
        host.predict(Request(["q"]))
    host.assign("champion", v1)
    with pytest.raises(NotReadyError, match=r"champion\.de"):
        host.predict(Request(["q"], market="de"))
    host.assign("champion.de", v2)
    assert host.predict(Request(["q"], market="de")).version == v2
    assert host.predict(Request(["q"])).version == v1
    with pytest.raises(UnknownMarketError, match="serves: de"):
        host.predict(Request(["q"], market="fr"))
    mixed = host.run_group([Request(["a"]), Request(["b"], market="de"), Request(["c"], market="fr")])
    assert [getattr(a, "version", type(a).__name__) for a in mixed] == [v1, v2, "UnknownMarketError"]


def test_top_k_and_abstain(store, base, versions):
    host = make_host(store, base)
    host.assign("champion", versions[0])
    answer = host.predict(Request(TEXTS, top_k=2))
    for p in answer.predictions:
        assert len(p.labels) == 2 and p.labels[0][1] >= p.labels[1][1] and p.intent == p.labels[0][0]
    assert all(p.intent is None for p in host.predict(Request(TEXTS, abstain_below=1.0)).predictions)
    assert len(host.predict(Request(TEXTS[:1], top_k=50)).predictions[0].labels) == len(LABELS)
