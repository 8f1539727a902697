"""The activity panels: label volume, events per minute, labeling functions, abstentions and the
adapter timeline."""

from collections.abc import Sequence
from typing import Any

import pygal
from markupsafe import Markup

from intentloop.dashboard.charts.base import (
    ALERT,
    MUTED,
    OK,
    chart_style,
    epoch,
    iso,
    new_chart,
    render,
    time_axis,
    time_format,
)


def _top_labels(label_volume: dict[str, dict[str, int]], n: int = 11) -> list[str]:
    totals: dict[str, int] = {}
    for counts in label_volume.values():
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    return [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def label_volume_chart(
    data: dict[str, Any],
    key: str = "label_volume",
    title: str = "Label volume: labelled searches per window",
) -> Markup:
    """Labelled searches per window, stacked by label (the 11 largest, the rest as ``other``)."""
    lab = data.get(key) or {}
    xs = [epoch(k) for k in lab]
    top = _top_labels(lab)
    stacks = [(k, [c.get(k, 0) for c in lab.values()]) for k in top]
    rest = [sum(v for k, v in c.items() if k not in top) for c in lab.values()]
    if any(rest):
        stacks.append(("other", rest))
    fmt = time_format((xs[-1] - xs[0]) if xs else 0.0)
    chart = new_chart(
        pygal.StackedBar,
        "stack volume",
        title,
        "no data yet",
        x_labels=[fmt(x) for x in xs],
        x_labels_major_count=4,
        show_minor_x_labels=False,
    )
    for name, counts in stacks:
        chart.add(
            name,
            [
                {"value": float(v), "tooltip": f"{name} {iso(x)}: {v:g}"} if v > 0 else None
                for x, v in zip(xs, counts, strict=True)
            ],
        )
    return render(chart)


def events_chart(data: dict[str, Any]) -> Markup:
    """Searches and feedback per minute of event time, from the per-window counts."""
    per_min = 60.0 / data["window_s"]
    vol = data["volume"]
    xs = [epoch(k) for k in vol]
    chart = new_chart(
        pygal.XY,
        "line events",
        "Events per minute (event time)",
        "no data yet",
        include_x_axis=True,
        **(time_axis(xs) if xs else {}),
    )
    for kind in ("searches", "feedback"):
        name = f"{kind}/min"
        points = []
        for x, counts in zip(xs, vol.values(), strict=True):
            y = counts.get(kind, 0) * per_min
            points.append({"value": (x, y), "tooltip": f"{name} {iso(x)}: {y:.4g}"})
        if points:
            chart.add(name, points)
    return render(chart)


def volume_charts(data: dict[str, Any]) -> list[Markup]:
    """Label volume by window (and, with the intent type, searches per intent type: a help surge
    stands out), and events per minute."""
    charts = [label_volume_chart(data)]
    if data.get("intent_volume"):
        charts.append(
            label_volume_chart(
                data, "intent_volume", "Intent types: searches per window (buy, browse, ask, help)"
            )
        )
    return [*charts, events_chart(data)]


def _share_bar(name: str, metric: str, share: float | None) -> dict[str, Any] | None:
    return None if share is None else {"value": float(share), "tooltip": f"{name} {metric}: {share:.1%}"}


def share_bars(
    title: str, css: str, rows: Sequence[tuple[str, Sequence[float | None]]], metrics: Sequence[str]
) -> Markup:
    """Per row (a labeling function, an abstention reason) one bar per metric, shares in [0, 1]."""
    rows = list(reversed(rows))  # pygal draws the first label lowest
    chart = new_chart(
        pygal.HorizontalBar,
        css,
        title,
        "no labeling report yet",
        height=90 + 8 * len(metrics) * len(rows) + 10 * len(rows),
        x_labels=[name[:22] for name, _ in rows],
        range=(0, 1),
        print_values=True,
        value_formatter=lambda v: f"{v:.0%}",
    )
    for j, metric in enumerate(metrics if rows else []):
        chart.add(metric, [_share_bar(name, metric, shares[j]) for name, shares in rows])
    return render(chart)


def labeling_charts(data: dict[str, Any]) -> list[Markup]:
    """Coverage and conflict of each labeling function; abstention shares by reason."""
    lf_rows = [
        (str(r["name"]), [r.get("coverage"), r.get("conflict")]) for r in data["labeling"]["functions"]
    ]
    ab = data["abstentions"]
    ab_rows: list[tuple[str, Sequence[float | None]]] = []
    if ab["queries"]:
        ab_rows.append(("all reasons", [ab["share"]]))
        ab_rows += [(k, [v / ab["queries"]]) for k, v in ab["by_reason"].items()]
    charts = [
        share_bars("Labeling functions: coverage and conflict", "lfs", lf_rows, ["coverage", "conflict"]),
        share_bars("Abstentions (share of aggregated queries)", "abstain", ab_rows, ["share"]),
    ]
    typed = (data.get("labeling_intent_type") or {}).get("functions") or []
    if typed:
        rows = [(str(r["name"]), [r.get("coverage"), r.get("conflict")]) for r in typed]
        charts.append(
            share_bars("Intent-type functions: coverage and conflict", "lfs", rows, ["coverage", "conflict"])
        )
    return charts


_GATE_COLORS = {"blessed": OK, "rejected": ALERT}
_ACTION_COLORS = {"promote": OK, "rollback": ALERT}
_LANES = {"versions": 1.0, "aliases": 0.0}


def _version_mark(v: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trained version on the ``versions`` lane, in a series named after its gate verdict."""
    gate, f1 = v["gate"], v["val_macro_f1"]
    tip = f"{v['version']} trained {v['created_at']}; gate: {gate or 'not recorded'}"
    if f1 is not None:
        tip += f"; val macro-F1 {f1:.3f}"
    if v["gate_reasons"]:
        tip += "; " + "; ".join(v["gate_reasons"][:3])
    point = {"value": (epoch(v["created_at"]), _LANES["versions"]), "label": v["version"][:8], "tooltip": tip}
    return f"version: {gate or 'not gated'}", point


def _alias_mark(e: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An alias move on the ``aliases`` lane, in a series named after the action."""
    tip = f"{e['action']} {e['alias']} -> {e['version']} (was {e['previous']}) by {e['actor']}: {e['reason']}"
    label = f"{e['alias']}:{e['version'][:6]}"
    return e["action"], {"value": (epoch(e["at"]), _LANES["aliases"]), "label": label, "tooltip": tip}


def _mark_color(series: str) -> str:
    kind = series.removeprefix("version: ")
    return _GATE_COLORS.get(kind) or _ACTION_COLORS.get(kind) or MUTED


def timeline_chart(data: dict[str, Any]) -> Markup:
    """Two lanes over time: trained versions (coloured by gate verdict) and alias moves."""
    tl = data["timeline"]
    series: dict[str, list[dict[str, Any]]] = {}
    for name, point in [*map(_version_mark, tl["versions"]), *map(_alias_mark, tl["alias_events"])]:
        series.setdefault(name, []).append(point)
    xs = [p["value"][0] for points in series.values() for p in points]
    axis: dict[str, Any] = {}
    if xs:
        pad = max((max(xs) - min(xs)) * 0.06, 60.0)  # room for the labels of the first and last marks
        lanes = [{"value": y, "label": lane} for lane, y in _LANES.items()]
        axis = time_axis([min(xs) - pad, max(xs) + pad])
        axis |= {"xrange": (min(xs) - pad, max(xs) + pad), "y_labels": lanes, "range": (-0.6, 1.6)}
    chart = new_chart(
        pygal.XY,
        "timeline",
        "Adapter timeline: versions (gate verdict) and alias moves",
        "no adapter trained yet",
        width=1060,
        height=190,
        style=chart_style([_mark_color(name) for name in series]),
        stroke=False,
        dots_size=6,
        print_labels=True,
        **axis,
    )
    for name, points in series.items():
        chart.add(name, points)
    return render(chart)
