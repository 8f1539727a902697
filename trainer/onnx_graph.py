"""The version as an ONNX graph: exported at publish time, checked against PyTorch, run by workers.

Eager PyTorch is not the limit of a small encoder on a CPU: ONNX Runtime runs the same merged model
(encoder with its adapter merged, pooling, every head, softmax) as one graph of fused kernels, and
a dynamically quantised int8 copy of it faster still (``docs/serving-backends.md`` has the
measurements). The graph is written into the artifact *before* it is published, so the manifest's
sha256 covers it like any other file, and it is exported from the very module the loader builds
(:func:`trainer.artifact.load_adapter`), so it cannot disagree with the torch backend about
templates, pooling or heads.

The export checks itself on held-out rows (the run's validation split) and publishes only what
passes: the fp32 graph's probabilities must match PyTorch's within ``fp32_tolerance``; the int8
graph may lose at most ``max_int8_f1_loss`` of macro-F1 against the fp32 graph. What failed is not
published and the reason is recorded in the manifest's ``onnx`` section, which a worker then
reports when it serves that version on the next backend down (``serving.adapters``).

The legacy TorchScript exporter (``dynamo=False``) is used on purpose: it exported MiniLM in 1.7 s
with dynamic batch and sequence axes, and its graphs are byte-for-byte reproducible, so the same
weights still give the same version id (``store.artifacts``).
"""

import logging
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from store.dimensions import CATEGORY
from trainer.classifier import FrozenBase, IntentClassifier, head_probabilities
from trainer.exceptions import CorruptAdapterError, IncompatibleAdapterError, ModelError
from trainer.inputs import InputFormat, tokenize
from trainer.metrics import macro_f1
from trainer.settings import ExportSettings

log = logging.getLogger(__name__)

GRAPH, GRAPH_INT8 = "model.onnx", "model.int8.onnx"
SECTION = "onnx"  # the manifest's record of the export: what was checked, what was published, why not
OPSET = 17
INPUTS = ("input_ids", "attention_mask")
# Quantisation moved a fitted MiniLM head's probabilities by up to 0.16 on held-out rows, as much
# as a graph of a neighbouring version may differ, so a loaded int8 graph is held to what it
# answered at export on the probe queries (recorded in the manifest), within what another CPU's
# int8 kernels may change (``INT8_PROBE_TOLERANCE``), and to PyTorch only loosely (not garbage).
INT8_LOAD_TOLERANCE = 0.3
INT8_PROBE_TOLERANCE = 0.02
PROBE = [
    "warm up query",
    "a second, longer warm up query for the tokenizer",
    "x",
    "red running shoes size 10",
    "cheap wireless earbuds with long battery",
    "gift for a 5 year old",
    "organic coffee beans 1kg",
    "how do i clean a cast iron pan",
]


class _Probabilities(torch.nn.Module):
    """What the graph computes: every head's softmax from one encoder pass, category first."""

    def __init__(self, module: IntentClassifier) -> None:
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.module.forward_heads(input_ids, attention_mask)
        return tuple(torch.softmax(logits[d], dim=-1) for d in output_names(self.module))


def output_names(module: IntentClassifier) -> list[str]:
    """The graph's outputs, one per label dimension: the category's, then each extra head's."""
    return [CATEGORY, *module.heads]


def export_graph(module: IntentClassifier, tokenizer: Any, path: Path) -> None:
    """Write ``module`` (merged, eval mode) as an fp32 ONNX graph with dynamic batch and length."""
    sample = tokenize(
        tokenizer, ["a sample query", "another, longer sample query"], module.input_format, batch=True
    )
    args = tuple(sample[name].to("cpu") for name in INPUTS)
    outputs = output_names(module)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {name: {0: "batch"} for name in outputs}
    wrapper = _Probabilities(module).to("cpu").eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer warns about data-dependent Python branches in transformers' mask helpers (they
        # are constant for an encoder given a mask) and that the exporter is the legacy one.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )


def quantize_graph(src: Path, dst: Path, *, keep_fp32: Sequence[str] = ()) -> None:
    """The int8 copy of ``src``: weights quantised per channel ahead of time, activations at run
    time (dynamic quantisation needs no calibration data, so it is safe to run on every publish);
    the nodes named in ``keep_fp32`` stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_not_preprocessing_advice)
    try:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=[*keep_fp32]
        )
    finally:
        root.removeFilter(_not_preprocessing_advice)


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    """The quantiser logs on the root logger, every call, that a shape pre-processing pass might
    help: advice for static quantisation (dynamic quantisation needs none); any other record passes."""
    return not str(record.msg).startswith("Please consider to run pre-processing")


def down_projections(path: Path) -> list[str]:
    """The MatMul nodes whose weight maps a wider input to a narrower output: the feed-forward
    blocks' second layer, whose input (after GELU) has the widest range of any activation, so
    per-tensor activation quantisation costs most there. Found by weight shape, not by name, so
    it holds for any encoder architecture."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and len(n.input) == 2
        and len(shape := shapes.get(n.input[1], ())) == 2
        and shape[0] > shape[1]
    ]


# Tried in order at publish; the first within the F1 budget is published. Measured on a MiniLM
# version with 92 labels (docs/serving-backends.md): every MatMul in int8 answered 2.0x the fp32
# graph at 98.0% agreement with it; keeping the down projections in fp32 1.5x at 98.7%.
INT8_RECIPES = ("every MatMul", "down projections fp32")


@dataclass(frozen=True)
class GraphOptions:
    """How a worker runs graphs: threads per call, spinning, and the device (CUDA when present)."""

    threads: int = 0  # intra-op threads; 0: every core
    spin: bool = False  # idle intra-op threads spin (burn a core) instead of sleeping
    device: str = "cpu"

    def providers(self) -> list[str]:
        import onnxruntime as ort

        if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]


class OnnxGraph:
    """One version's graph in an ONNX Runtime session; ``run`` is thread-safe (ORT's sessions are).

    Loading refuses a file ONNX Runtime cannot read (:class:`CorruptAdapterError`) and a graph whose
    inputs, outputs or widths are not the version's (:class:`IncompatibleAdapterError`): ``widths``
    is each output's label count as the manifest says.
    """

    def __init__(self, path: Path, widths: dict[str, int], options: GraphOptions | None = None) -> None:
        import onnxruntime as ort

        options = options or GraphOptions()
        self.path = path
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads or max(1, os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not to our log
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=options.providers())
        except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidProtobuf...)
            raise CorruptAdapterError(f"{path.name} is not a loadable ONNX graph: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if sorted(inputs) != sorted(INPUTS):
            raise IncompatibleAdapterError(f"{path.name} takes {sorted(inputs)}, not {list(INPUTS)}")
        for name, arg in inputs.items():
            # Token ids of any batch and length: int64, two axes, both symbolic (a graph exported
            # without dynamic axes would only take the export sample's shape).
            if (
                arg.type != "tensor(int64)"
                or len(arg.shape) != 2
                or not all(isinstance(d, str) for d in arg.shape)
            ):
                raise IncompatibleAdapterError(
                    f"{path.name}: input {name} is {arg.type} {arg.shape}, int64 [batch, tokens] needed"
                )
        if set(outputs) != set(widths):
            raise IncompatibleAdapterError(
                f"{path.name} answers {sorted(outputs)}, the manifest {sorted(widths)}"
            )
        for name, width in widths.items():
            shape = outputs[name]
            if len(shape) != 2 or shape[1] != width:
                raise IncompatibleAdapterError(
                    f"{path.name}: output {name} is {shape}, {width} labels needed"
                )
        self.outputs = list(widths)
        self.widths = dict(widths)
        self.provider = self.session.get_providers()[0]  # what runs it (CPU when CUDA was not taken)

    def run(self, enc: Any) -> dict[str, np.ndarray]:
        """Every output's probabilities for a tokenised batch (numpy ``input_ids``/``attention_mask``)."""
        feeds = {name: np.asarray(enc[name], dtype=np.int64) for name in INPUTS}
        try:
            values = self.session.run(self.outputs, feeds)
        except Exception as exc:  # ORT's own exception types derive from Exception only
            raise IncompatibleAdapterError(f"{self.path.name} failed to run: {exc}") from exc
        return {name: np.asarray(v, dtype=np.float32) for name, v in zip(self.outputs, values, strict=True)}


def graph_probabilities(
    graph: OnnxGraph,
    tokenizer: Any,
    texts: Sequence[str],
    fmt: InputFormat,
    *,
    lock: threading.Lock,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """:func:`trainer.classifier.head_probabilities` on the graph: same tokenizer call, same rows."""
    if not texts:
        return {name: np.zeros((0, graph.widths[name]), dtype=np.float32) for name in graph.outputs}
    step = batch_size or len(texts)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in graph.outputs}
    for i in range(0, len(texts), step):
        with lock:
            enc = tokenize(tokenizer, texts[i : i + step], fmt, batch=True, tensors="np")
        for name, probs in graph.run(enc).items():
            parts[name].append(probs)
    return {name: rows[0] if len(rows) == 1 else np.concatenate(rows) for name, rows in parts.items()}


def widths_of(module: IntentClassifier) -> dict[str, int]:
    """Each output's label count, as the loaded version has them."""
    return {CATEGORY: len(module.labels), **{d: len(lab) for d, lab in module.head_labels.items()}}


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between two answers, over every output and row."""
    diffs = [np.abs(a[name] - b[name]).max(initial=0.0) for name in a]
    return float(np.max(diffs)) if diffs else 0.0  # np.max, not max(): a NaN anywhere is the answer


def check_graph(
    graph: OnnxGraph,
    module: IntentClassifier,
    tokenizer: Any,
    lock: threading.Lock,
    tolerance: float,
    recorded: Any = None,
) -> float:
    """Refuse a graph that does not answer like ``module`` on the probe queries within
    ``tolerance`` (a graph of another version, or one edited after export) nor, when the export
    ``recorded`` its answers to them (int8), like it did then; returns the largest difference."""
    want = fp32_probabilities(module, tokenizer, PROBE, lock)
    got = graph_probabilities(graph, tokenizer, PROBE, module.input_format, lock=lock)
    diff = max_difference(got, want)
    if not np.isfinite(diff) or diff > tolerance:
        raise IncompatibleAdapterError(
            f"{graph.path.name} does not answer like its adapter (largest probability difference "
            f"{diff:.4f} > {tolerance:g}): a graph of another version, or edited after export"
        )
    if recorded is not None:
        then = np.asarray(recorded, dtype=np.float32)
        if then.shape != got[CATEGORY].shape:
            raise IncompatibleAdapterError(f"{graph.path.name}: the recorded probe answers are {then.shape}")
        drift = float(np.abs(got[CATEGORY] - then).max())
        if drift > INT8_PROBE_TOLERANCE:
            raise IncompatibleAdapterError(
                f"{graph.path.name} answers the probe queries {drift:.4f} away from what it answered "
                f"at export (> {INT8_PROBE_TOLERANCE:g}): not the graph that was checked"
            )
    return diff


def fp32_probabilities(
    module: IntentClassifier, tokenizer: Any, texts: Sequence[str], lock: threading.Lock
) -> dict[str, np.ndarray]:
    """PyTorch's answers in fp32 on the module's device, without the bf16 autocast serving uses
    on CUDA: the reference a graph (fp32 or int8 of fp32 weights) is held to."""
    device = next(module.parameters()).device
    return head_probabilities(
        module, tokenizer, list(texts), device=device, lock=lock, batch_size=64, fp32=True
    )


def probe_answers(
    graph: OnnxGraph, tokenizer: Any, fmt: InputFormat, lock: threading.Lock
) -> list[list[float]]:
    """The graph's category probabilities on the probe queries, as the manifest records them."""
    probs = graph_probabilities(graph, tokenizer, PROBE, fmt, lock=lock)[CATEGORY]
    return [[round(float(p), 6) for p in row] for row in probs]


# ---------------------------------------------------------------------------------------- export
Rows = Sequence[tuple[str, str]]  # (text, label) held-out rows


def export_version(
    adapter_dir: Path,
    base: FrozenBase,
    held_out: Rows,
    settings: ExportSettings,
    head_rows: Mapping[str, Rows] | None = None,
) -> dict[str, Any]:
    """Export the saved (not yet published) version in ``adapter_dir`` and check it on ``held_out``
    (text, label) rows of the category and ``head_rows`` of each extra head: writes the graphs that
    pass and the manifest's ``onnx`` section; returns it. A failure of the export itself is
    recorded as a reason like a failed check (the version still publishes, PyTorch serves it).

    ``base`` must be on the CPU: the reference is PyTorch in fp32, what the graph computes.
    """
    import json

    import onnxruntime as ort

    from trainer.artifact import MANIFEST, load_version

    manifest_path = adapter_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    module, fused = load_version(base, adapter_dir, manifest)
    rows = list(held_out)[: settings.parity_rows] or [(t, "") for t in PROBE]
    heads = {
        d: list(r)[: settings.parity_rows] for d, r in (head_rows or {}).items() if r and d in module.heads
    }
    lock = threading.Lock()
    section: dict[str, Any] = {
        "opset": OPSET,
        "exporter": f"torch {torch.__version__} (TorchScript)",
        "runtime": f"onnxruntime {ort.__version__}",
        "held_out_rows": len(rows),
        **({"head_rows": {d: len(r) for d, r in heads.items()}} if heads else {}),
    }
    fp32_path = adapter_dir / GRAPH
    check = _Check(module, fused, base.tokenizer, rows, heads, lock)
    try:
        reference = check.answers(lambda texts: fp32_probabilities(module, base.tokenizer, texts, lock))
        export_graph(module, base.tokenizer, fp32_path)
        fp32 = check.answers(check.graph(OnnxGraph(fp32_path, widths_of(module))))
    except Exception as exc:  # the exporter, onnx and ORT raise many types; none may fail the run
        fp32_path.unlink(missing_ok=True)
        section["fp32"] = {"published": False, "reason": f"export failed: {type(exc).__name__}: {exc}"[:500]}
        return _record(manifest_path, manifest, section)
    diff = max_difference(_flat(fp32), _flat(reference))
    section["fp32"] = {"published": True, "file": GRAPH, "max_abs_diff": float(f"{diff:.3g}")}
    if not diff <= settings.fp32_tolerance:
        fp32_path.unlink()
        section["fp32"] = {
            "published": False,
            "max_abs_diff": float(f"{diff:.3g}"),
            "reason": f"fp32 graph differs from PyTorch by {diff:.2g} > {settings.fp32_tolerance:g}",
        }
        return _record(manifest_path, manifest, section)
    if settings.int8:
        section["int8"] = _export_int8(adapter_dir, check, fp32, settings)
    return _record(manifest_path, manifest, section)


# Every output on the category's rows, and each extra head's output on that head's own rows.
Answers = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _flat(answers: Answers) -> dict[str, np.ndarray]:
    """Every matrix of an answer under one key each (a head's own rows apart from the category's)."""
    return {**answers[0], **{f"{d} (own rows)": v for d, v in answers[1].items()}}


@dataclass
class _Check:
    """The held-out rows an export is judged on, and how a model's answers to them are scored."""

    module: IntentClassifier
    fused: Any  # FusedMembers of a fused version (its answers are the fusion's), else None
    tokenizer: Any
    rows: list[tuple[str, str]]
    heads: dict[str, list[tuple[str, str]]]
    lock: threading.Lock

    def graph(self, graph: OnnxGraph) -> Any:
        fmt = self.module.input_format
        return lambda texts: graph_probabilities(
            graph, self.tokenizer, texts, fmt, lock=self.lock, batch_size=64
        )

    def answers(self, run: Any) -> Answers:
        """``run`` (texts -> every output's probabilities) on the category rows and each head's."""
        return run([t for t, _ in self.rows]), {d: run([t for t, _ in r])[d] for d, r in self.heads.items()}

    def f1s(self, answers: Answers, reference: Answers) -> dict[str, tuple[float, str]]:
        """Macro-F1 of ``answers`` per dimension (of the fusion's answers for a fused version),
        against the rows' labels, or ``reference``'s answers where the rows have none."""
        out = {}
        for dimension, rows, probs, ref in [
            (CATEGORY, self.rows, self._category(answers), self._category(reference)),
            *((d, self.heads[d], answers[1][d], reference[1][d]) for d in self.heads),
        ]:
            labels = self.module.labels if dimension == CATEGORY else self.module.head_labels[dimension]
            truth, against = [y for _, y in rows], "held-out labels"
            if not all(y in labels for y in truth):
                truth, against = [labels[int(i)] for i in ref.argmax(axis=1)], "fp32 graph's answers"
            out[dimension] = (macro_f1(truth, [labels[int(i)] for i in probs.argmax(axis=1)]), against)
        return out

    def _category(self, answers: Answers) -> np.ndarray:
        probs = answers[0][CATEGORY]
        if self.fused is None:
            return probs
        return np.asarray(self.fused.score([t for t, _ in self.rows], probs).probs)


def _export_int8(adapter_dir: Path, check: _Check, fp32: Answers, settings: ExportSettings) -> dict[str, Any]:
    """Quantise by each recipe in turn and publish the first int8 graph whose macro-F1 stays within
    the budget of the fp32 graph's in every dimension (the fusion's, for a fused version) and that
    passes the check a worker will run on it; none: no int8 graph, every attempt and the reason."""
    path = adapter_dir / GRAPH_INT8
    base_f1 = check.f1s(fp32, fp32)
    tried: list[dict[str, Any]] = []
    for recipe in INT8_RECIPES:
        try:
            keep = down_projections(adapter_dir / GRAPH) if recipe == "down projections fp32" else []
            quantize_graph(adapter_dir / GRAPH, path, keep_fp32=keep)
            graph = OnnxGraph(path, widths_of(check.module))
            int8 = check.answers(check.graph(graph))
            probe = probe_answers(graph, check.tokenizer, check.module.input_format, check.lock)
        except Exception as exc:  # the quantiser, onnx or ONNX Runtime
            path.unlink(missing_ok=True)
            tried.append({"recipe": recipe, "reason": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        f1 = check.f1s(int8, fp32)
        losses = {d: base_f1[d][0] - f1[d][0] for d in f1}
        category = fp32[0][CATEGORY]
        record = {
            "recipe": recipe,
            "macro_f1": round(f1[CATEGORY][0], 4),
            "fp32_macro_f1": round(base_f1[CATEGORY][0], 4),
            "f1_loss": round(losses[CATEGORY], 4),
            "against": base_f1[CATEGORY][1] + (" (the fusion's answers)" if check.fused is not None else ""),
            "agreement": round(float((int8[0][CATEGORY].argmax(1) == category.argmax(1)).mean()), 4),
            "max_abs_diff": float(f"{max_difference(int8[0], fp32[0]):.3g}"),
            **(
                {"head_f1_loss": {d: round(v, 4) for d, v in losses.items() if d != CATEGORY}}
                if check.heads
                else {}
            ),
        }
        worst = max(losses, key=lambda d: losses[d])
        if losses[worst] <= settings.max_int8_f1_loss:
            try:  # what a worker will check it by: publish nothing it would not serve
                check_graph(graph, check.module, check.tokenizer, check.lock, INT8_LOAD_TOLERANCE, probe)
                return {**record, "file": GRAPH_INT8, "published": True, "probe": probe, "tried": tried}
            except ModelError as exc:
                record["reason"] = f"a worker would not serve it: {exc}"
        else:
            record["reason"] = (
                f"{worst} macro-F1 {f1[worst][0]:.4f} vs fp32 {base_f1[worst][0]:.4f} "
                f"loses {losses[worst] * 100:.2f} points"
            )
        tried.append(record)
        path.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    reason = "; ".join(f"{r['recipe']}: {r['reason']}" for r in tried)
    reason = (
        f"on {len(check.rows)} rows ({base_f1[CATEGORY][1]}) {reason} > {settings.max_int8_f1_loss * 100:g}"
    )
    log.warning("int8 graph not published: %s", reason)
    last = tried[-1] if tried else {}
    return {**last, "file": None, "published": False, "reason": reason, "tried": tried}


def _record(manifest_path: Path, manifest: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    import json

    manifest[SECTION] = section
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return section
