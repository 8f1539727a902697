"""Serving on the ONNX backend: a damaged or foreign graph is refused before it may serve (the old
version keeps serving), and a fused version's encoder member runs on its graph."""

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import LABELS, TEXTS, make_exported_versions, make_host, republish_with_files

from serving.adapters import Adapter, Backend, SharedBase
from serving.exceptions import AdapterRefusedError, RefusalKind
from serving.host import Request
from serving.synthetic import synthetic_adapter, synthetic_fused_adapter
from store.artifacts import MANIFEST, ArtifactStore
from store.versions import CHAMPION
from trainer.onnx_graph import GRAPH, GRAPH_INT8, SECTION
from trainer.settings import ExportSettings

FP32, INT8 = Backend("onnx"), Backend("onnx", int8=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ArtifactStore:
    return ArtifactStore(tmp_path_factory.mktemp("onnx-serving"))


@pytest.fixture(scope="module")
def exported(store: ArtifactStore, tiny_encoder_dir: Path) -> list[str]:
    """Two versions with the same labels, both graphs published for each."""
    versions = make_exported_versions(store, tiny_encoder_dir, [21, 22])
    for v in versions:
        assert {GRAPH, GRAPH_INT8} <= set(store.fetch(v)[1]["files"])
    return versions


@pytest.fixture(scope="module")
def bases(tiny_encoder_dir: Path) -> dict[str, SharedBase]:
    return {
        "torch": SharedBase(tiny_encoder_dir),
        "fp32": SharedBase(tiny_encoder_dir, backend=FP32),
        "int8": SharedBase(tiny_encoder_dir, backend=INT8),
    }


def _build(base: SharedBase, store: ArtifactStore, version: str) -> Adapter:
    path, manifest = store.fetch(version)
    return base.build(version, path, manifest)


def _graph_bytes(store: ArtifactStore, version: str, name: str) -> bytes:
    return (store.path(version) / name).read_bytes()


def _other_labels_graph(store: ArtifactStore, base_dir: Path) -> bytes:
    version = synthetic_adapter(
        store, base_dir, seed=23, labels=LABELS[:3], max_length=16, export=ExportSettings(int8=False)
    )
    return _graph_bytes(store, version, GRAPH)


UNLOADABLE, FOREIGN = "not a loadable ONNX graph", "does not answer like its adapter"
INTEGRITY, INCOMPATIBLE = RefusalKind.INTEGRITY, RefusalKind.INCOMPATIBLE
# (file replaced, backend, where its bytes come from, refusal kind, what the reason says)
DAMAGES = [
    pytest.param(GRAPH, "fp32", "garbage", INTEGRITY, UNLOADABLE, id="fp32-garbage"),
    pytest.param(GRAPH, "fp32", "truncated", INTEGRITY, UNLOADABLE, id="fp32-truncated"),
    pytest.param(GRAPH, "fp32", "other", INCOMPATIBLE, FOREIGN, id="fp32-of-another-version"),
    pytest.param(GRAPH, "fp32", "widths", INCOMPATIBLE, "4 labels needed", id="fp32-of-other-labels"),
    pytest.param(
        GRAPH, "fp32", "static", INCOMPATIBLE, "int64 [batch, tokens] needed", id="fp32-static-shape"
    ),
    pytest.param(GRAPH_INT8, "int8", "garbage", INTEGRITY, UNLOADABLE, id="int8-garbage"),
]


@pytest.mark.parametrize(("name", "backend", "source", "kind", "says"), DAMAGES)
def test_a_damaged_or_foreign_graph_is_refused(
    store: ArtifactStore,
    exported: list[str],
    bases: dict[str, SharedBase],
    tiny_encoder_dir: Path,
    tmp_path: Path,
    name: str,
    backend: str,
    source: str,
    kind: RefusalKind,
    says: str,
) -> None:
    a, b = exported
    original = _graph_bytes(store, a, name)
    data = {
        "garbage": b"\x08\x07this is not a protobuf" * 64,
        "truncated": original[: len(original) // 2],
        "other": _graph_bytes(store, b, name),
        "widths": _other_labels_graph(store, tiny_encoder_dir) if source == "widths" else b"",
        "static": _static_shape_graph(bases["torch"], store, a, tmp_path) if source == "static" else b"",
    }[source]
    damaged = republish_with_files(store, a, tmp_path, {name: data})
    assert damaged != a
    store.fetch(damaged)  # the store accepts it: the hashes were resealed, only the content is wrong
    _build(bases[backend], store, a)  # the undamaged version loads on the same backend
    with pytest.raises(AdapterRefusedError) as refused:
        _build(bases[backend], store, damaged)
    assert refused.value.kind == kind and refused.value.version == damaged
    assert says in refused.value.reason
    assert name in refused.value.reason


def _count_runs(adapter: Adapter) -> list[int]:
    """The batch sizes the adapter's graph session is run on from now on (it must be what answers)."""
    assert adapter.graph is not None
    session, calls = adapter.graph.session, []
    run = session.run

    def counted(outputs, feeds, *args, **kwargs):
        calls.append(len(feeds["input_ids"]))
        return run(outputs, feeds, *args, **kwargs)

    object.__setattr__(adapter.graph, "session", _Wrapped(session, counted))
    return calls


class _Wrapped:
    """A session whose ``run`` is counted; everything else is the session's."""

    def __init__(self, session, run) -> None:
        self._session, self.run = session, run

    def __getattr__(self, name):
        return getattr(self._session, name)


def _edited_copy(store: ArtifactStore, version: str, tmp: Path, edit) -> ArtifactStore:
    """A store holding ``version`` with its published manifest's ONNX record edited in place."""
    copy = ArtifactStore(tmp / "edited")
    shutil.copytree(store.path(version), copy.path(version))
    manifest_path = copy.path(version) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    edit(manifest[SECTION]["int8"])
    manifest_path.write_text(json.dumps(manifest))
    return copy


def _static_shape_graph(base: SharedBase, store: ArtifactStore, version: str, tmp: Path) -> bytes:
    """``version``'s own model exported without dynamic axes: it loads, has the right outputs and
    widths, and would fail on any batch but the sample's shape."""
    import torch

    from trainer.inputs import tokenize
    from trainer.onnx_graph import INPUTS, _Probabilities, output_names

    module = _build(base, store, version).module
    sample = tokenize(base.tokenizer, ["a sample query"], module.input_format, batch=True)
    path = tmp / "static.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and the tracer's notes
        torch.onnx.export(
            _Probabilities(module).eval(),
            tuple(sample[n] for n in INPUTS),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=list(INPUTS),
            output_names=output_names(module),
        )
    return path.read_bytes()


def _nudge_probe(record: dict) -> None:
    record["probe"][3][0] = round(record["probe"][3][0] + 0.1, 6)


def _drop_probe(record: dict) -> None:
    del record["probe"]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_nudge_probe, "away from what it answered at export"),
        (_drop_probe, "no recorded probe answers"),
    ],
)
def test_an_int8_graph_not_matching_its_recorded_probe_answers_gives_way_to_fp32(
    store: ArtifactStore,
    exported: list[str],
    bases: dict[str, SharedBase],
    tmp_path: Path,
    edit,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not the graph the export checked (or another CPU's int8 kernels answering otherwise): the
    version serves from its fp32 graph, checked against PyTorch, and the worker says why."""
    a = exported[0]
    edited = _edited_copy(store, a, tmp_path, edit)
    # The ONNX record is not one of the manifest's hashed content fields: the store cannot see the
    # edit, only the check against the recorded answers can.
    with caplog.at_level(logging.WARNING, logger="serving.adapters"):
        adapter = _build(bases["int8"], edited, a)
    assert adapter.backend == "onnx-fp32" and adapter.graph is not None
    assert adapter.graph.path.name == GRAPH
    assert says in caplog.text and "served by its fp32 graph" in caplog.text


def test_another_versions_int8_graph_gives_way_to_fp32_or_is_refused_without_one(
    store: ArtifactStore, exported: list[str], bases: dict[str, SharedBase], tmp_path: Path
) -> None:
    a, b = exported
    foreign = _graph_bytes(store, b, GRAPH_INT8)
    with_fp32 = republish_with_files(store, a, tmp_path, {GRAPH_INT8: foreign})
    adapter = _build(bases["int8"], store, with_fp32)
    assert adapter.backend == "onnx-fp32" and adapter.graph is not None
    want = bases["torch"].predict_proba(_build(bases["torch"], store, a), TEXTS)
    np.testing.assert_allclose(bases["int8"].predict_proba(adapter, TEXTS), want, atol=1e-3, rtol=0)
    alone = republish_with_files(store, a, tmp_path, {GRAPH_INT8: foreign, GRAPH: None})
    with pytest.raises(AdapterRefusedError) as refused:
        _build(bases["int8"], store, alone)
    assert refused.value.kind == INCOMPATIBLE and GRAPH_INT8 in refused.value.reason


def test_the_host_keeps_serving_when_a_damaged_graph_is_assigned(
    store: ArtifactStore, exported: list[str], bases: dict[str, SharedBase], tmp_path: Path
) -> None:
    a, b = exported
    host = make_host(store, bases["int8"])
    host.assign(CHAMPION, a)
    before = host.predict(Request(TEXTS, top_k=4))
    damaged = republish_with_files(store, b, tmp_path, {GRAPH_INT8: b"garbage" * 100})
    with pytest.raises(AdapterRefusedError) as refused:
        host.assign(CHAMPION, damaged)
    assert refused.value.kind == RefusalKind.INTEGRITY
    assert host.version() == a
    after = host.predict(Request(TEXTS, top_k=4))
    assert after.version == a and [p.version for p in after.predictions] == [a] * len(TEXTS)
    assert [p.labels for p in after.predictions] == [p.labels for p in before.predictions]
    assert set(host.refused) == {damaged} and host.refused[damaged].kind == RefusalKind.INTEGRITY
    info = host.describe()
    assert info["version"] == a and info["backends"] == {a: "onnx-int8"}
    assert damaged in info["refused"]  # type: ignore[operator]
    host.assign(CHAMPION, b)  # the undamaged sibling loads on the same host afterwards
    assert host.describe()["backends"] == {a: "onnx-int8", b: "onnx-int8"}


def test_a_fused_versions_encoder_member_runs_on_its_graph(
    store: ArtifactStore, tiny_encoder_dir: Path, bases: dict[str, SharedBase]
) -> None:
    fused = synthetic_fused_adapter(
        store, tiny_encoder_dir, seed=11, labels=LABELS, max_length=16, export=ExportSettings()
    )
    _, manifest = store.fetch(fused)
    assert GRAPH in manifest["files"] and manifest[SECTION]["fp32"]["published"] is True
    on_graph, on_torch = _build(bases["fp32"], store, fused), _build(bases["torch"], store, fused)
    assert on_graph.fused is not None and on_graph.graph is not None and on_graph.backend == "onnx-fp32"
    assert on_torch.graph is None
    texts = [*TEXTS, "x", "best grocery kit", "a gift for a friend who likes home decor and cooking"]
    calls = _count_runs(on_graph)
    got, want = bases["fp32"].score(on_graph, texts), bases["torch"].score(on_torch, texts)
    assert calls == [len(texts)]  # the graph answered the encoder member, once, for every row
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-3, rtol=0)
    assert set(got.members) == set(want.members) and len(got.members) == 3
    for name in want.members:
        np.testing.assert_allclose(got.members[name], want.members[name], atol=1e-3, rtol=0)
        np.testing.assert_array_equal(got.voted[name], want.voted[name])
    on_int8 = _build(bases["int8"], store, fused)
    assert on_int8.graph is not None and on_int8.backend in {"onnx-int8", "onnx-fp32"}
