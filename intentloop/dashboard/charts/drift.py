"""The drift panels: each statistic over time against its thresholds, and the labels that moved most."""

from typing import Any, NamedTuple

import pygal
from markupsafe import Markup

from intentloop.dashboard.charts.base import (
    ALERT,
    MUTED,
    NEGATIVE,
    PALETTE,
    WARN,
    chart_style,
    epoch,
    iso,
    new_chart,
    render,
    time_axis,
)
from streams.drift.overview import latest_per_pair


class PairStyle(NamedTuple):
    """How one (stream, reference) pair is drawn in the drift charts."""

    name: str
    color: str
    dashed: bool


PAIR_STYLES = {
    ("weak_labels", "previous_window"): PairStyle("labels/previous", PALETTE[0], False),
    ("weak_labels", "training"): PairStyle("labels/training", PALETTE[1], False),
    ("predictions", "previous_window"): PairStyle("served/previous", PALETTE[2], True),
    ("predictions", "training"): PairStyle("served/training", PALETTE[3], True),
    ("weak_labels/intent_type", "previous_window"): PairStyle("intent type/previous", PALETTE[4], False),
    ("weak_labels/intent_type", "help_surge"): PairStyle("help surge", PALETTE[5], True),
}
STAT_TITLES = {
    "js": "Jensen-Shannon distance (base 2)",
    "psi": "PSI (population stability index)",
    "hellinger": "Hellinger distance",
    "linf": "L-infinity (largest share move)",
}


def pair_style(pair: tuple[str, str]) -> PairStyle:
    return PAIR_STYLES.get(pair, PairStyle(f"{pair[0]} vs {pair[1]}", MUTED, False))


def _threshold_rules(stat: str, thresholds: dict[str, Any]) -> list[tuple[float, str, str]]:
    """(value, name, colour) of the dashed rules a statistic's chart draws: PSI has two bands."""
    if stat == "psi":
        return [(thresholds["psi_warn"], "moderate", WARN), (thresholds["psi"], "major", ALERT)]
    if thresholds.get(stat) is not None:
        return [(thresholds[stat], "alert", ALERT)]
    return []


def _drift_point(name: str, report: dict[str, Any], stat: str) -> dict[str, Any]:
    """One window's value; an alerting window is drawn larger and red (class ``alert``)."""
    x, y = epoch(report["window_end"]), float(report[stat])
    point: dict[str, Any] = {"value": (x, y), "tooltip": f"{name} {iso(x)}: {y:.4g}"}
    if report["alert"]:
        point["tooltip"] += " (ALERT)"
        point["node"] = {"r": 4.5, "class": "dot reactive alert", "style": f"fill:{ALERT};stroke:{ALERT}"}
    return point


def drift_chart(
    stat: str, by_pair: dict[tuple[str, str], list[dict[str, Any]]], th: dict[str, Any]
) -> Markup:
    """One statistic over time: a line per (stream, reference), threshold rules, alerts in red."""
    lines = []
    for pair, rows in sorted(by_pair.items()):
        style = pair_style(pair)
        # windows too small to judge are left out: their noise would drown the signal
        points = [
            _drift_point(style.name, r, stat)
            for r in rows
            if r["status"] != "insufficient" and r[stat] is not None
        ]
        if points:
            lines.append((style, points))
    xs = [p["value"][0] for _, points in lines for p in points]
    rules = _threshold_rules(stat, th) if xs else []
    colors = [s.color for s, _ in lines] + [c for _, _, c in rules]
    axis = time_axis(xs) if xs else {}
    chart = new_chart(
        pygal.XY,
        f"line drift-{stat}",
        STAT_TITLES[stat],
        "no data yet",
        style=chart_style(colors),
        include_x_axis=True,
        **axis,
    )
    for style, points in lines:
        chart.add(style.name, points, stroke_style={"dasharray": "2,3"} if style.dashed else None)
    for value, name, _ in rules:
        rule = [(min(xs), value), (max(xs), value)]  # a dashed line across the plot, no dots
        chart.add(f"threshold {name} {value:g}", rule, show_dots=False, stroke_style={"dasharray": "5,4"})
    return render(chart)


def drift_charts(data: dict[str, Any]) -> list[Markup]:
    """One line chart per statistic (JS, PSI, Hellinger, L-infinity)."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["reports"]:
        by_pair.setdefault((r["stream"], r["reference"]), []).append(r)
    return [drift_chart(stat, by_pair, data["thresholds"]) for stat in STAT_TITLES]


def _move_bar(move: dict[str, Any], window_end: str) -> dict[str, Any]:
    return {
        "value": move["delta"] * 100,
        "color": ALERT if move["delta"] > 0 else NEGATIVE,
        "tooltip": f"{move['label']}: {move['reference_share']:.1%} -> {move['share']:.1%} "
        f"(window ending {window_end})",
    }


def moves_chart(title: str, report: dict[str, Any] | None) -> Markup:
    """Share changes in points, largest first: gains red (right), losses blue (left)."""
    moves = list(reversed(report["moves"][:8])) if report else []  # pygal draws the first label lowest
    chart = new_chart(
        pygal.HorizontalBar,
        "moves",
        title,
        "no windows compared yet",
        height=70 + 22 * len(moves) if moves else 110,
        x_labels=[m["label"] for m in moves],
        show_legend=False,
        print_values=True,
        value_formatter=lambda v: f"{v:+.1f} pt",
    )
    if report and moves:
        chart.add("share change", [_move_bar(m, report["window_end"]) for m in moves])
    return render(chart)


def moves_charts(data: dict[str, Any]) -> list[Markup]:
    """The labels that moved most in the newest window of weak labels, against each reference."""
    latest = latest_per_pair(data["reports"])
    out = []
    for reference, what in (("previous_window", "previous window"), ("training", "the training snapshot")):
        r = latest.get(("weak_labels", reference))
        when = f" (window ending {r['window_end'][11:19]})" if r else ""
        out.append(moves_chart(f"Labels that moved most vs {what}{when}", r))
    return out
