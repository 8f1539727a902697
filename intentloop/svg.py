"""Server-side SVG charts for the offline dashboard: no JavaScript, no CDN, nothing to download.

Each function returns one ``<svg>`` element as a string. Every data point is an element of class
``pt`` (a circle, a bar or a marker) with a ``<title>`` tooltip the browser shows on hover, so the
browser test can count what was drawn. Text is escaped; sizes are in CSS pixels.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#86bcb6",
    "#d37295",
)
ALERT = "#d62728"
OK = "#2ca02c"
MUTED = "#888"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    """One line: (x as epoch seconds, y) points; ``alerts`` marks the points that alerted."""

    name: str
    points: list[tuple[float, float]]
    color: str
    alerts: list[bool] = field(default_factory=list)
    dashed: bool = False


def _time_ticks(x0: float, x1: float, sx: Callable[[float], float], y: float) -> list[str]:
    """Four time labels along an x axis from ``x0`` to ``x1`` (epoch seconds), ends aligned inward."""
    span = x1 - x0
    out = []
    for k in range(4):
        x = x0 + span * k / 3
        anchor = "start" if k == 0 else ("end" if k == 3 else "middle")
        out.append(
            f'<text x="{sx(x):.1f}" y="{y}" text-anchor="{anchor}" class="ax">{_fmt_time(x, span)}</text>'
        )
    return out


def _fmt_time(x: float, span: float) -> str:
    dt = datetime.fromtimestamp(x, UTC)
    if span <= 3 * 3600:
        return dt.strftime("%H:%M:%S")
    if span <= 3 * 86400:
        return dt.strftime("%d %H:%M")
    return dt.strftime("%m-%d")


def _nice_max(v: float) -> float:
    if v <= 0 or math.isnan(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _open(width: int, height: int, title: str, cls: str) -> list[str]:
    return [
        f'<svg class="chart {cls}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="8" y="16" class="ct">{escape(title)}</text>',
    ]


def _empty(width: int, height: int, title: str, cls: str, message: str) -> str:
    parts = _open(width, height, title, cls)
    parts.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">{escape(message)}</text>'
    )
    return "".join(parts) + "</svg>"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    thresholds: Sequence[tuple[float, str, str]] = (),
    width: int = 520,
    height: int = 220,
    y_max: float | None = None,
    cls: str = "line",
) -> str:
    """Lines over time with dashed threshold rules; alerting points are drawn larger and red."""
    pts = [p for s in series for p in s.points if not math.isnan(p[1])]
    if not pts:
        return _empty(width, height, title, cls, "no data yet")
    left, right, top, bottom = 44, 110, 26, 26
    xs = [p[0] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    top_val = max([p[1] for p in pts] + [t[0] for t in thresholds] + [0.0])
    ymax = y_max if y_max is not None else _nice_max(top_val * 1.1)
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - min(y, ymax) / ymax * ph

    parts = _open(width, height, title, cls)
    for k in range(5):
        v = ymax * k / 4
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="ax">{v:.3g}</text>')
    parts.extend(_time_ticks(x0, x1, sx, height - 8))
    for value, label, col in thresholds:
        y = sy(value)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{col}" '
            f'stroke-dasharray="5,4" class="threshold"><title>{escape(label)} {value:g}</title></line>'
        )
        parts.append(
            f'<text x="{left + pw + 4}" y="{y + 4:.1f}" class="ax" fill="{col}">{escape(label)}</text>'
        )
    legend_y = top + 4
    for s in series:
        good = [(x, y) for x, y in s.points if not math.isnan(y)]
        if not good:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        dash = ' stroke-dasharray="2,3"' if s.dashed else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash}/>')
        alerts = s.alerts or [False] * len(s.points)
        for (x, y), alert in zip(s.points, alerts, strict=False):
            if math.isnan(y):
                continue
            r, fill = (4.5, ALERT) if alert else (2.4, s.color)
            when = datetime.fromtimestamp(x, UTC).isoformat(timespec="seconds")
            parts.append(
                f'<circle class="pt{" alert" if alert else ""}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}" '
                f'fill="{fill}" data-value="{y:.6g}"><title>{escape(s.name)} {when}: {y:.4g}'
                f"{' (ALERT)' if alert else ''}</title></circle>"
            )
        parts.append(
            f'<rect x="{left + pw + 4}" y="{legend_y + 14:.0f}" width="10" height="3" fill="{s.color}"/>'
            f'<text x="{left + pw + 18}" y="{legend_y + 19:.0f}" class="lg">{escape(s.name)}</text>'
        )
        legend_y += 14
    return "".join(parts) + "</svg>"


def diverging_bars(
    title: str,
    items: Sequence[tuple[str, float, str]],
    *,
    width: int = 520,
    row: int = 20,
    cls: str = "moves",
) -> str:
    """Horizontal bars left (negative) or right (positive) of a centre line: share changes.

    ``items`` are (label, delta, tooltip).
    """
    if not items:
        return _empty(width, 80, title, cls, "no windows compared yet")
    height = 30 + row * len(items) + 10
    mid, half = width / 2 + 40, width / 2 - 60
    m = max(abs(d) for _, d, _ in items) or 1.0
    parts = _open(width, height, title, cls)
    parts.append(f'<line x1="{mid}" x2="{mid}" y1="24" y2="{height - 6}" class="axis"/>')
    for i, (label, delta, tip) in enumerate(items):
        y = 28 + i * row
        w = abs(delta) / m * half
        x = mid if delta >= 0 else mid - w
        col = ALERT if delta > 0 else "#4e79a7"
        parts.append(f'<text x="8" y="{y + 13}" class="lg">{escape(label)}</text>')
        parts.append(
            f'<rect class="pt" x="{x:.1f}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row - 6}" '
            f'fill="{col}" data-value="{delta:.6g}"><title>{escape(tip)}</title></rect>'
        )
        tx = mid + w + 4 if delta >= 0 else mid - w - 4
        anchor = "start" if delta >= 0 else "end"
        parts.append(
            f'<text x="{tx:.1f}" y="{y + 13}" text-anchor="{anchor}" class="ax">{delta * 100:+.1f} pt</text>'
        )
    return "".join(parts) + "</svg>"


def stacked_bars(
    title: str,
    xs: Sequence[float],
    stacks: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int = 520,
    height: int = 220,
    cls: str = "stack",
) -> str:
    """One bar per x (epoch seconds), stacked by series (e.g. labelled searches per label)."""
    if not xs or not stacks:
        return _empty(width, height, title, cls, "no data yet")
    left, right, top, bottom = 44, 110, 26, 26
    pw, ph = width - left - right, height - top - bottom
    totals = [sum(s[1][i] for s in stacks) for i in range(len(xs))]
    ymax = _nice_max(max(totals) * 1.05)
    bw = pw / len(xs)
    parts = _open(width, height, title, cls)
    for k in range(5):
        v = ymax * k / 4
        y = top + ph - v / ymax * ph
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="ax">{v:.3g}</text>')
    span = (xs[-1] - xs[0]) or 1.0
    for i, x in enumerate(xs):
        base = 0.0
        for j, (name, values) in enumerate(stacks):
            v = values[i]
            if v <= 0:
                continue
            h = v / ymax * ph
            y = top + ph - (base + v) / ymax * ph
            when = datetime.fromtimestamp(x, UTC).isoformat(timespec="seconds")
            parts.append(
                f'<rect class="pt" x="{left + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{color(j)}" data-value="{v:g}"><title>{escape(name)} {when}: '
                f"{v:g}</title></rect>"
            )
            base += v
    for k in (0, len(xs) - 1):
        anchor = "start" if k == 0 else "end"
        xpos = left + (k + (0 if k == 0 else 1)) * bw
        parts.append(
            f'<text x="{xpos:.1f}" y="{height - 8}" text-anchor="{anchor}" class="ax">'
            f"{_fmt_time(xs[k], span)}</text>"
        )
    for j, (name, _) in enumerate(stacks[:12]):
        y = top + 4 + j * 14
        parts.append(
            f'<rect x="{left + pw + 6}" y="{y + 4}" width="10" height="10" fill="{color(j)}"/>'
            f'<text x="{left + pw + 20}" y="{y + 13}" class="lg">{escape(name)}</text>'
        )
    return "".join(parts) + "</svg>"


def grouped_hbars(
    title: str,
    rows: Sequence[tuple[str, Sequence[float | None]]],
    metrics: Sequence[str],
    *,
    width: int = 520,
    cls: str = "lfs",
) -> str:
    """Per row (a labeling function) one thin bar per metric (coverage, conflict), shares in [0, 1]."""
    if not rows:
        return _empty(width, 80, title, cls, "no labeling report yet")
    bar, gap = 8, 8
    group = bar * len(metrics) + gap
    height = 40 + group * len(rows) + 10
    left, right = 150, 50
    pw = width - left - right
    parts = _open(width, height, title, cls)
    for j, m in enumerate(metrics):
        parts.append(
            f'<rect x="{left + j * 110}" y="22" width="10" height="10" fill="{color(j)}"/>'
            f'<text x="{left + j * 110 + 14}" y="31" class="lg">{escape(m)}</text>'
        )
    for i, (name, values) in enumerate(rows):
        y = 40 + i * group
        parts.append(f'<text x="8" y="{y + group / 2}" class="lg">{escape(name[:22])}</text>')
        for j, v in enumerate(values):
            if v is None:
                continue
            w = max(0.0, min(1.0, v)) * pw
            parts.append(
                f'<rect class="pt" x="{left}" y="{y + j * bar}" width="{max(w, 1):.1f}" height="{bar - 1}" '
                f'fill="{color(j)}" data-value="{v:.4g}"><title>{escape(name)} {escape(metrics[j])}: '
                f"{v:.1%}</title></rect>"
            )
            parts.append(
                f'<text x="{left + w + 4:.1f}" y="{y + j * bar + bar - 1}" class="ax">{v:.0%}</text>'
            )
    return "".join(parts) + "</svg>"


@dataclass
class Mark:
    """A point on the adapter timeline."""

    at: float
    lane: str  # "versions" or "aliases"
    label: str
    tooltip: str
    color: str
    shape: str = "circle"  # circle, up (promotion), down (rollback), cross (retire)


def timeline(
    title: str, marks: Sequence[Mark], *, width: int = 1060, height: int = 130, cls: str = "timeline"
) -> str:
    """Two lanes over time: trained versions (coloured by gate verdict) and alias moves."""
    if not marks:
        return _empty(width, height, title, cls, "no adapter trained yet")
    left, right = 90, 20
    pw = width - left - right
    xs = [m.at for m in marks]
    x0, x1 = min(xs), max(xs)
    pad = max((x1 - x0) * 0.06, 60.0)  # room for the labels of the first and last marks
    x0, x1 = x0 - pad, x1 + pad
    lanes = {"versions": 50, "aliases": 95}
    parts = _open(width, height, title, cls)
    for name, y in lanes.items():
        parts.append(f'<text x="8" y="{y + 4}" class="lg">{name}</text>')
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y}" y2="{y}" class="grid"/>')
    span = x1 - x0
    parts.extend(_time_ticks(x0, x1, lambda x: left + (x - x0) / span * pw, height - 6))
    for m in marks:
        x = left + (m.at - x0) / span * pw
        y = lanes.get(m.lane, 50)
        tip = f"<title>{escape(m.tooltip)}</title>"
        if m.shape == "up":
            shape = f'<path class="pt" d="M{x:.1f},{y - 8} l7,12 l-14,0 z" fill="{m.color}">{tip}</path>'
        elif m.shape == "down":
            shape = f'<path class="pt" d="M{x:.1f},{y + 8} l7,-12 l-14,0 z" fill="{m.color}">{tip}</path>'
        elif m.shape == "cross":
            shape = (
                f'<path class="pt" d="M{x - 5:.1f},{y - 5} l10,10 m0,-10 l-10,10" stroke="{m.color}" '
                f'stroke-width="2.5">{tip}</path>'
            )
        else:
            shape = f'<circle class="pt" cx="{x:.1f}" cy="{y}" r="6" fill="{m.color}">{tip}</circle>'
        parts.append(shape)
        parts.append(
            f'<text x="{x:.1f}" y="{y - 12}" text-anchor="middle" class="ax">{escape(m.label)}</text>'
        )
    return "".join(parts) + "</svg>"
