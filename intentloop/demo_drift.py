"""The demo's drift step (issue #6): the traffic it produces drifts part-way, and the drift job
must find it. Kept out of ``demo.py`` so the demo's own flow stays readable.

The simulated traffic spans about two minutes of event time, so the check uses windows of a
sixth of that on the event clock (the newest vote is "now"), not hourly wall-clock windows. It
runs right after ingestion, before any adapter exists, so the reference is the previous window;
the onset-to-alert time is measured in event time: the alert is raised when the window that
contains the change closes.
"""

from collections.abc import Callable
from typing import Any

from intentloop.runtime import Runtime
from streams.drift.job import KafkaAlertSink, run_drift_check
from streams.simulator import DriftInjection, Simulation

# Half-way through, garden searches become four times as popular and pet searches start.
DEMO_DRIFT = DriftInjection(at=0.5, surge="garden", surge_factor=4.0, new="pets")


def check_demo_drift(rt: Runtime, sim: Simulation, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run the drift job over the demo's traffic and measure when the injected drift was caught."""
    onset = sim.drift_onset
    first_ts, last_ts = sim.queries[0].timestamp, sim.queries[-1].timestamp
    window_s = max(5, round((last_ts - first_ts).total_seconds() / 6))
    settings = rt.settings.drift.model_copy(update={"window_s": window_s, "clock": "events", "settle_s": 0})
    echo(f"      checking label drift in {window_s}s windows of event time (alerts -> ops.alerts) ...")
    sink = KafkaAlertSink(rt.endpoints.kafka_bootstrap)
    try:
        result = run_drift_check(
            rt.db,
            settings,
            since=first_ts,
            sinks=[sink],
            registry=rt.registry,
            dimensions=rt.settings.taxonomy.dimensions,
        )
    finally:
        sink.close()
    drift = sim.config.drift
    out: dict[str, Any] = {
        "injected": None
        if drift is None
        else drift.model_dump() | {"onset": onset.isoformat() if onset else None},
        "window_s": window_s,
        "windows_compared": len(result.reports),
        "alerts": len(result.alerts),
    }
    if onset is None:
        return out
    before = [r for r in result.reports if r["window_end"] <= onset]
    out["windows_judged_before_onset"] = sum(r["status"] != "insufficient" for r in before)
    out["alerts_before_onset"] = sum(r["alert"] for r in before)
    after = sorted(
        (r for r in result.reports if r["alert"] and r["window_end"] > onset), key=lambda r: r["window_end"]
    )
    if after:
        first = after[0]
        out["first_alert"] = {
            "reference": first["reference"],
            "window_start": first["window_start"].isoformat(),
            "window_end": first["window_end"].isoformat(),
            "js": first["js"],
            "psi": first["psi"],
            "reasons": first["reasons"],
            "top_moves": first["details"]["moves"][:3],
        }
        out["onset_to_alert_s"] = round((first["window_end"] - onset).total_seconds(), 1)
        out["detected"] = True
    else:
        out["detected"] = False
    return out


def drift_lines(d: dict[str, Any]) -> list[str]:
    """The demo summary's drift lines."""
    inj = d.get("injected")
    if not inj:
        return [
            f"  drift               none injected; {d['alerts']} alerts in "
            f"{d['windows_compared']} comparisons"
        ]
    head = (
        f"  drift injected      at {inj['onset'][11:19]} "
        f"({inj['surge']} x{inj['surge_factor']:g}, new {inj['new']}); "
        f"{d['windows_judged_before_onset']} windows before it judged, {d['alerts_before_onset']} alerts"
    )
    if not d.get("detected"):
        return [head, f"  drift detected      NO ({d['window_s']}s windows)"]
    first = d["first_alert"]
    moves = ", ".join(f"{m['label']} {m['delta'] * 100:+.1f}pt" for m in first["top_moves"])
    return [
        head,
        f"  drift detected      {d['onset_to_alert_s']:.0f}s after onset "
        f"(window {first['window_start'][11:19]}-{first['window_end'][11:19]} "
        f"vs {first['reference'].replace('_', ' ')}, {d['window_s']}s windows): "
        f"JS {first['js']:.2f}, PSI {first['psi']:.2f}; {moves}",
    ]
