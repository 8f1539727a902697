"""`intentloop demo`: the whole loop on real servers, with a readable summary at the end.

stack up -> migrate -> simulate traffic into Kafka -> the ingestion worker ingests -> weak labels ->
aggregated labels (``intentloop labels aggregate``, with a sample of gold labels) -> LoRA
fine-tune -> promote -> an inference worker (already running, not yet ready) hot-swaps to the new
adapter -> held-out queries are answered over HTTP and scored against ground truth.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from intentloop.demo_drift import DEMO_DRIFT, check_demo_drift, drift_lines
from intentloop.jobs import refresh_explanations, train_and_maybe_promote
from intentloop.labels_report import decision_line
from intentloop.runtime import Runtime
from intentloop.settings import Settings, StackPorts
from intentloop.stack import Endpoints, LocalStack
from intentloop.traffic import send_traffic, sim_config
from intentloop.worker_processes import (
    WorkerProcess,
    endpoint_env,
    free_port,
    http_ready,
    served_version,
    wait_until,
)
from store.dimensions import INTENT_TYPE
from store.events import ingest_stats
from store.labels import upsert_gold, weak_label_snapshot
from store.settings import ArtifactSettings
from store.taxonomy import label_for_category
from streams.labels_job import run_aggregation
from streams.simulator import Simulation
from streams.simulator.publish import TrafficCounts
from trainer.metrics import accuracy, macro_f1
from trainer.settings import TrainSettings
from trainer.split import is_validation

Echo = Callable[[str], None]

_MALFORMED = 25
_UNKNOWN_PRODUCT = 10


@dataclass
class _Workers:
    """The demo's child processes. The inference worker starts before any adapter exists, so the
    summary shows it hot-swapping to the promoted one rather than loading it at start."""

    serve_port: int
    server: WorkerProcess
    ingest: WorkerProcess

    @classmethod
    def start(cls, eps: Endpoints, demo_dir: Path) -> "_Workers":
        logs = demo_dir / "logs"
        env = endpoint_env(eps, {"INTENTLOOP_STATE_DIR": str(demo_dir)})
        port = free_port()
        server = WorkerProcess(
            ["worker", "serve", "--port", str(port), "--worker-id", "demo-serve"], env, logs / "serve.log"
        )
        ingest = WorkerProcess(["worker", "ingest"], env, logs / "ingest.log")
        return cls(port, server, ingest)

    def stop(self) -> None:
        self.ingest.stop()
        self.server.stop()


def run_demo(
    settings: Settings,
    *,
    searches: int,
    seed: int,
    echo: Echo,
    keep_stack: bool = False,
    shoppers: str = "realistic",
) -> dict[str, Any]:
    """Run the loop on a fresh embedded stack of its own; never touches configured servers."""
    started = time.monotonic()
    echo("[1/6] starting a fresh embedded stack (Tansu, PostgreSQL 18, Redis) ...")
    demo_dir = (settings.state_dir / "demo").resolve()
    stack = _fresh_stack(demo_dir)
    rt = _demo_runtime(settings, demo_dir, stack.up(timeout_s=120))
    workers = _Workers.start(rt.endpoints, demo_dir)
    try:
        summary = _close_the_loop(rt, workers, searches=searches, seed=seed, shoppers=shoppers, echo=echo)
    finally:
        workers.stop()
        rt.close()
        if not keep_stack:
            stack.down()
    summary["wall_s"] = round(time.monotonic() - started, 1)
    _print_summary(summary, echo)
    return summary


def _close_the_loop(
    rt: Runtime, workers: _Workers, *, searches: int, seed: int, shoppers: str, echo: Echo
) -> dict[str, Any]:
    """Steps 2-6, from traffic to answers scored against the truth; the summary without ``wall_s``."""
    sim, produced = _produce_traffic(rt, searches, seed, shoppers, echo)
    ingested = _ingest(rt, produced, workers.ingest, echo)
    label_quality = _weak_label_quality(rt, sim.truth)
    drift = check_demo_drift(rt, sim, echo)
    aggregated = _aggregate_labels(rt, sim.truth, sim.intent_types, echo)
    trained = _train(rt, aggregated, echo)
    before = served_version(workers.serve_port)
    echo(f"[5/6] promoting {trained['version']} (worker serving: {before or 'nothing yet'}) ...")
    promotion = _promote(rt, trained)
    wait_until(
        http_ready(f"http://127.0.0.1:{workers.serve_port}/readyz"),
        timeout_s=120,
        what="the inference worker to load the adapter",
        proc=workers.server,
    )
    echo("[6/6] asking the inference worker about held-out queries ...")
    evaluation = _evaluate_served(workers.serve_port, sim.truth, sim.intent_types, rt.settings)
    explained = _explain_sample(rt, workers.serve_port, evaluation["samples"], promotion)
    return {
        "events_produced": {**asdict(produced), "total": produced.total},
        "ingested": ingested,
        "weak_labels": label_quality,
        "drift": drift,
        "aggregated_labels": aggregated,
        "training": _training_summary(trained),
        "promotion": promotion,
        "served": {"version_before_promotion": before, **evaluation},
        "explained": explained,
    }


def _explain_sample(
    rt: Runtime, port: int, samples: list[dict[str, Any]], promotion: dict[str, Any]
) -> dict[str, Any] | None:
    """Why the worker answered one sample query as it did (``/v1/explain``), and the dashboard's
    per-label view computed for the promoted version."""
    if not promotion.get("promoted"):
        return None
    # the least certain answer of several words: where an operator asks why (a certain one shows
    # little, since leaving any one word out changes nothing)
    contested = sorted(
        (s for s in samples if len(s["query"].split()) > 1), key=lambda s: s["top"][0]["probability"]
    )
    if not contested:
        return None
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        body = (
            client.post("/v1/explain", json={"query": " ".join(contested[0]["query"].split()[:8])})
            .raise_for_status()
            .json()
        )
    return {**body, "per_label_view": refresh_explanations(rt, promotion["version"])}


# The demo trains on a few minutes of one small shop: on the easy shop (catalogue words only) TF-IDF
# scored 0.98 macro-F1 on its held-out rows against the adapter's 0.97, and the gate, which by default
# requires beating TF-IDF, would have refused it. The demo's point is the loop, so it lets the
# candidate trail TF-IDF by this much, and says so; the fused candidate (issue 13) needs less.
DEMO_BASELINE_MARGIN = -0.03


def _demo_runtime(settings: Settings, demo_dir: Path, eps: Endpoints) -> Runtime:
    """The demo's own state dir, local artifacts and gate; schema and topics made ready."""
    settings = settings.model_copy(
        update={"state_dir": demo_dir, "artifacts": ArtifactSettings(), "train": _demo_train(settings)}
    )
    rt = Runtime(settings, eps)
    rt.ready_db()
    rt.ready_topics()
    return rt


def _demo_train(settings: Settings) -> TrainSettings:
    gate = settings.train.gate.model_copy(
        update={"baseline_margin": min(settings.train.gate.baseline_margin, DEMO_BASELINE_MARGIN)}
    )
    return settings.train.model_copy(update={"gate": gate})


def _fresh_stack(demo_dir: Path) -> LocalStack:
    """Stop whatever a previous demo left and start from empty servers on free ports."""
    if demo_dir.exists():
        LocalStack(demo_dir).down()
        shutil.rmtree(demo_dir)
    ports = StackPorts(kafka_port=free_port(), postgres_port=free_port(), redis_port=free_port())
    return LocalStack(demo_dir, ports=ports)


def _produce_traffic(
    rt: Runtime, searches: int, seed: int, shoppers: str, echo: Echo
) -> tuple[Simulation, TrafficCounts]:
    echo(f"[2/6] simulating {searches} searches ({shoppers} shoppers, seed {seed}), producing to Kafka ...")
    config = sim_config("shop", seed=seed, searches=searches, shoppers=shoppers).model_copy(
        update={"drift": DEMO_DRIFT}
    )
    return send_traffic(rt, config, malformed=_MALFORMED, unknown_product=_UNKNOWN_PRODUCT)


def _ingest(rt: Runtime, produced: TrafficCounts, proc: WorkerProcess, echo: Echo) -> dict[str, Any]:
    """Wait for the ingestion worker to store every event, then stop it; what was stored, and how long
    it took."""
    ingest_s = _await_ingestion(rt, produced, proc, echo)
    ingested = _stats_dict(rt) | {"wall_s": round(ingest_s, 1)}
    proc.stop()
    return ingested


def _await_ingestion(rt: Runtime, produced: TrafficCounts, proc: WorkerProcess, echo: Echo) -> float:
    """Block until every produced event is accounted for in Postgres; returns the seconds it took."""
    t0 = time.monotonic()
    echo("[3/6] the ingestion worker ingests both topics into Postgres ...")
    want = produced.total
    with tqdm(total=want, desc="ingest", unit="ev", leave=False) as bar:

        def done() -> bool:
            with rt.db.session() as session:
                s = ingest_stats(session)
            have = s.queries + s.feedback + s.dead_letters
            bar.update(have - bar.n)
            return have >= want and s.feedback_by_status.get("pending", 0) == 0

        wait_until(done, timeout_s=600, what="ingestion to catch up", proc=proc, interval_s=0.5)
    return time.monotonic() - t0


def _train(rt: Runtime, aggregated: dict[str, Any], echo: Echo) -> dict[str, Any]:
    """Train and gate a candidate without promoting it: the demo promotes it itself, visibly."""
    echo(
        f"      training a LoRA adapter, fused with TF-IDF and the behaviour memory, on "
        f"{aggregated['labelled_queries']} labelled queries ..."
    )
    echo(
        f"      (demo gate: the candidate may trail the TF-IDF baseline by "
        f"{-rt.settings.train.gate.baseline_margin:.0%}: a few minutes of one small shop's traffic)"
    )
    return train_and_maybe_promote(rt, promote=False, progress=True)


def _training_summary(trained: dict[str, Any]) -> dict[str, Any]:
    metrics = trained["metrics"]
    return {k: trained[k] for k in ("run_id", "version", "snapshot", "gate")} | {
        "val_macro_f1": metrics.get("val_macro_f1"),
        "device": metrics.get("device"),
        "trainable_params_pct": metrics.get("trainable_params_pct"),
        "train_wall_s": metrics.get("wall_s"),
    }


def _weak_label_quality(rt: Runtime, truth: dict[str, str]) -> dict[str, Any]:
    t = rt.settings.train
    with rt.db.session() as session:
        rows = weak_label_snapshot(session, min_votes=t.min_votes, min_confidence=t.min_confidence)
    tax = rt.settings.taxonomy
    scored = [(r.label, label_for_category(truth[r.norm_text], tax)) for r in rows if r.norm_text in truth]
    return {
        "labelled_queries": len(rows),
        "distinct_queries_seen": len(truth),
        "coverage": round(len(rows) / max(1, len(truth)), 3),
        "accuracy_vs_truth": round(sum(a == b for a, b in scored) / max(1, len(scored)), 3),
    }


_GOLD_EVERY = 10  # the demo's "annotators" label every 10th distinct query (from the simulator's truth)


def _aggregate_labels(
    rt: Runtime, truth: dict[str, str], intent_truth: dict[str, str], echo: Echo
) -> dict[str, Any]:
    """Load a gold sample of every dimension, run the aggregation job, and score its labels against
    the full truth."""
    echo("[4/6] aggregating weak labels (position-debiased, with a label-model check on gold) ...")
    tax = rt.settings.taxonomy
    known = sorted((q, label) for q, path in truth.items() if (label := label_for_category(path, tax)))
    gold = known[::_GOLD_EVERY]
    intent_gold = sorted(intent_truth.items())[::_GOLD_EVERY] if INTENT_TYPE in tax.dimensions else []
    with rt.db.session() as session:
        upsert_gold(session, gold, source="demo:simulator-sample")
        upsert_gold(session, intent_gold, source="demo:simulator-sample", dimension=INTENT_TYPE)
    result = run_aggregation(rt.db, rt.settings.labels, dimensions=tax.dimensions, progress=True)
    labelled = {q: d.label for q, d in result.distributions.items() if not d.abstained}
    scored = [(label, label_for_category(truth[q], tax)) for q, label in labelled.items() if q in truth]
    intent = {}
    if INTENT_TYPE in result.dimensions:
        by_type = result.dimensions[INTENT_TYPE].distributions
        typed = {q: d.label for q, d in by_type.items() if not d.abstained}
        right = sum(label == intent_truth.get(q) for q, label in typed.items() if q in intent_truth)
        intent = {
            "intent_type": {
                "labelled_queries": len(typed),
                "coverage": round(len(typed) / max(1, len(intent_truth)), 3),
                "accuracy_vs_truth": round(right / max(1, sum(q in intent_truth for q in typed)), 3),
                "gold_labels": len(intent_gold),
            }
        }
    return intent | {
        "labelled_queries": len(labelled),
        "coverage": round(len(labelled) / max(1, len(truth)), 3),
        "accuracy_vs_truth": round(sum(a == b for a, b in scored) / max(1, len(scored)), 3),
        "abstained": result.report["abstained"],
        "method": result.method,
        "decision": decision_line(result.report),
        "gold_labels": len(gold),
        "comparison": result.report["comparison"],
        "report_id": result.report_id,
    }


def _promote(rt: Runtime, trained: dict[str, Any]) -> dict[str, Any]:
    from store.versions import promote

    gate = trained["gate"]
    if not gate["passed"]:
        return {"promoted": False, "reason": f"gate refused: {gate}"}
    move = promote(
        rt.db,
        rt.registry,
        trained["version"],
        actor="demo",
        reason=f"demo: val_macro_f1={gate['val_macro_f1']:.3f}",
    )
    return {"promoted": True, "previous": move.previous, "version": move.version}


_SAMPLES_PER_TYPE = 2  # the summary's sample queries: this many of each true intent type


def _evaluate_served(
    port: int, truth: dict[str, str], intent_truth: dict[str, str], settings: Settings
) -> dict[str, Any]:
    """Every held-out query through ``/v1/intent`` (every dimension in one call), scored against
    the simulator's truth; a few sample answers of each intent type for the summary."""
    tax = settings.taxonomy
    held_out = sorted(q for q in truth if is_validation(q, settings.train.val_fraction))
    gold = [label_for_category(truth[q], tax) or "?" for q in held_out]
    predicted: list[str] = []
    typed: list[tuple[str, str]] = []  # (true, predicted) intent type
    versions: set[str] = set()
    samples: list[dict[str, Any]] = []
    per_type: dict[str, int] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for start in range(0, len(held_out), 64):
            chunk = held_out[start : start + 64]
            body = client.post("/v1/intent", json={"queries": chunk, "top_k": 2}).raise_for_status().json()
            versions.add(body["version"])
            for pred in body["predictions"]:
                predicted.append(pred["labels"][0]["label"])
                intent = (pred.get("dimensions") or {}).get(INTENT_TYPE)
                want = intent_truth.get(pred["query"])
                if intent is not None and want is not None:
                    typed.append((want, intent["labels"][0]["label"]))
                key = want or "-"
                if per_type.get(key, 0) < _SAMPLES_PER_TYPE:
                    per_type[key] = per_type.get(key, 0) + 1
                    samples.append(
                        {"query": pred["query"], "top": pred["labels"], "intent_type": intent, "truth": want}
                    )
        backends = client.get("/readyz").json().get("backends", {})  # torch, onnx-fp32 or onnx-int8
    labels = sorted(set(gold))
    out: dict[str, Any] = {
        "answered_by": sorted(versions),
        "backend": {v: backends.get(v) for v in sorted(versions)},
        "held_out_queries": len(held_out),
        "accuracy": round(accuracy(gold, predicted), 3),
        "macro_f1": round(macro_f1(gold, predicted), 3),
        "chance_accuracy": round(1 / max(1, len(labels)), 3),
        "samples": sorted(samples, key=lambda s: s["truth"] or ""),
    }
    if typed:
        t_true, t_pred = [a for a, _ in typed], [b for _, b in typed]
        out["intent_type"] = {
            "queries": len(typed),
            "accuracy": round(accuracy(t_true, t_pred), 3),
            "macro_f1": round(macro_f1(t_true, t_pred), 3),
            "help_recall": round(
                sum(a == b == "help" for a, b in typed) / max(1, sum(a == "help" for a in t_true)), 3
            ),
        }
    return out


def _stats_dict(rt: Runtime) -> dict[str, Any]:
    with rt.db.session() as session:
        s = ingest_stats(session)
    return {
        "queries": s.queries,
        "feedback": s.feedback,
        "feedback_by_status": s.feedback_by_status,
        "dead_letters": s.dead_letters,
        "weak_label_queries": s.weak_label_queries,
    }


def _fusion_lines(gate: dict[str, Any]) -> list[str]:
    """The fused version's members and the fused model on the gate's held-out rows (macro-F1 overall
    and on the tail), or why the version is a plain adapter."""
    members = gate.get("members") or {}
    if not members:
        return ["  fused model         none: a plain adapter (see the run's fusion report for why)"]
    fused = gate.get("scores", {}).get("candidate", {})

    def f1(report: dict[str, Any]) -> str:
        tail = report.get("slices", {}).get("tail", {}).get("macro_f1")
        return f"{report.get('macro_f1', float('nan')):.3f}" + (
            f" (tail {tail:.3f})" if tail is not None else ""
        )

    parts = ", ".join(f"{name} {f1(report)}" for name, report in sorted(members.items()))
    return [f"  fused model         {f1(fused)} macro-F1 on {fused.get('n')} gate rows; members {parts}"]


def _print_summary(s: dict[str, Any], echo: Echo) -> None:
    ing, wl, tr, sv = s["ingested"], s["weak_labels"], s["training"], s["served"]
    ag = s["aggregated_labels"]
    echo("")
    echo("intentloop demo — the loop closed")
    ep = s["events_produced"]
    echo(
        f"  events produced     {ep['total']:>8}  "
        f"({ep['malformed']} malformed, {ep['unknown_product']} for unknown products)"
    )
    echo(
        f"  events stored       {ing['queries'] + ing['feedback']:>8}  "
        f"queries {ing['queries']}, feedback {ing['feedback']} {ing['feedback_by_status']}"
    )
    echo(
        f"  dead letters        {ing['dead_letters']:>8}  "
        f"(ingestion took {ing['wall_s']:.0f}s, worker start and consumer-group join included)"
    )
    echo(
        f"  weak labels (raw)   {wl['labelled_queries']:>8}  queries over the confidence bar; "
        f"accuracy vs truth {wl['accuracy_vs_truth']:.1%}, coverage {wl['coverage']:.1%}"
    )
    echo(
        f"  aggregated labels   {ag['labelled_queries']:>8}  queries labelled; accuracy vs truth "
        f"{ag['accuracy_vs_truth']:.1%}, coverage {ag['coverage']:.1%}, "
        f"{ag['abstained']['total']} abstained {ag['abstained']['by_reason']}"
    )
    echo(f"  labeler             {ag['decision']}; {ag['gold_labels']} gold labels")
    if "intent_type" in ag:
        it = ag["intent_type"]
        echo(
            f"  intent-type labels  {it['labelled_queries']:>8}  queries labelled; accuracy vs truth "
            f"{it['accuracy_vs_truth']:.1%}, coverage {it['coverage']:.1%}, {it['gold_labels']} gold labels"
        )
    for line in drift_lines(s["drift"]):
        echo(line)
    echo(
        f"  adapter             {tr['version']}  val macro-F1 {tr['val_macro_f1']:.3f} on {tr['device']}, "
        f"{tr['trainable_params_pct']:.2f}% params trained, {tr['train_wall_s']:.0f}s"
    )
    for line in _fusion_lines(tr["gate"]):
        echo(line)
    echo(
        f"  served by           {', '.join(f'{v} ({b})' for v, b in sv['backend'].items())} (before "
        f"promotion: {sv['version_before_promotion'] or 'nothing'})"
    )
    echo(
        f"  held-out queries    {sv['held_out_queries']:>8}  accuracy {sv['accuracy']:.1%}, macro-F1 "
        f"{sv['macro_f1']:.3f} (chance {sv['chance_accuracy']:.1%})"
    )
    if "intent_type" in sv:
        it = sv["intent_type"]
        echo(
            f"  intent type         {it['queries']:>8}  accuracy {it['accuracy']:.1%}, macro-F1 "
            f"{it['macro_f1']:.3f}, help recall {it['help_recall']:.1%} (same call, second head)"
        )
    for sample in sv["samples"]:
        tops = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in sample["top"])
        intent = sample.get("intent_type")
        kind = (
            f" | {intent['label'] or 'abstained'} {intent['labels'][0]['probability']:.2f}" if intent else ""
        )
        echo(f"    {sample['query']!r:<36} -> {tops}{kind}")
    ex = s.get("explained")
    if ex:
        words = "  ".join(f"{w['word']} {w['attribution']:+.2f}" for w in ex["words"])
        echo(
            f"  why ({ex['method']}, {ex['elapsed_ms']:.0f} ms) {ex['query']!r} -> {ex['label']} "
            f"{ex['probability']:.2f}: {words}"
        )
        echo(f"  per-label view      {ex['per_label_view']} (dashboard, `intentloop explain --stored`)")
    echo(f"  wall time           {s['wall_s']:.0f}s")
