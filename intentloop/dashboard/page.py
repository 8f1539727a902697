"""The dashboard page: the overview dict laid out by a Jinja2 template around pygal's SVG charts.

The template (``templates/dashboard.html``, package data) holds the markup and the CSS; this module
only turns the overview into what the template shows: the pills of the newest window, the health
cards with their numbers formatted, the live workers, the recent alerts, the explained example
queries with each word's highlight, and the charts. Autoescape
is on, so every string from the database is escaped; only the charts, which pygal writes and
escapes itself, go in as :class:`markupsafe.Markup`.
"""

from datetime import UTC, datetime
from typing import Any, NamedTuple

from jinja2 import Environment, PackageLoader, StrictUndefined

from intentloop.dashboard import charts
from streams.drift.overview import latest_per_pair

_ENV = Environment(
    loader=PackageLoader("intentloop.dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,  # a misspelt name in the template fails the tests, not silently
    trim_blocks=True,
    lstrip_blocks=True,
)


class Pill(NamedTuple):
    """The status of one (stream, reference) pair in its newest judged window."""

    name: str
    status: str
    reasons: str


def status_pills(reports: list[dict[str, Any]]) -> list[Pill]:
    latest = latest_per_pair(reports)
    return [
        Pill(charts.pair_style(pair).name, r["status"], "; ".join(r["reasons"]))
        for pair, r in sorted(latest.items())
    ]


def health_cards(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, formatted number) of each operational health card."""
    health, ab, coverage = data["health"], data["abstentions"], data["labeling"]["coverage"]
    return [
        ("feedback / min (last 15 min)", f"{health['feedback_per_minute']:g}"),
        ("dead-letter rate", f"{health['dead_letter_rate']:.2%}"),
        ("events stored", f"{health['events_total']:,}"),
        ("dead letters", f"{health['dead_letters_total']:,}"),
        ("abstentions", "-" if ab["share"] is None else f"{ab['share']:.1%}"),
        ("LF coverage (labelled)", "-" if coverage is None else f"{coverage:.1%}"),
    ]


def worker_cards(workers: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(worker id, version served, its aliases) of each worker with a live heartbeat."""
    return [
        (
            str(w["worker"]),
            str(w["version"] or "-"),
            ", ".join(f"{a}={v}" for a, v in sorted(w["aliases"].items())),
        )
        for w in workers["workers"]
    ]


class Word(NamedTuple):
    """One word of an explained query with its inline highlight (no string from the data in it)."""

    text: str
    style: str
    attribution: float


class Example(NamedTuple):
    """An explained query as the shopper typed it, word by word, with its label and probability."""

    words: list[Word]
    label: str
    probability: str


_TOWARD = (44, 160, 44)  # charts.base.OK: the word pushes toward the label
_AWAY = (214, 39, 40)  # charts.base.ALERT: the word pushes away from it
_MAX_ALPHA = 0.85  # the strongest word still leaves its text readable


def highlight(words: list[list[Any]]) -> list[Word]:
    """Each word with a background whose opacity is its attribution relative to the query's
    largest one (by magnitude): green toward the label, red away."""
    peak = max((abs(float(a)) for _, a in words), default=0.0)
    out = []
    for word, a in words:
        a = float(a)
        alpha = _MAX_ALPHA * abs(a) / peak if peak > 0 else 0.0
        r, g, b = _TOWARD if a >= 0 else _AWAY
        out.append(Word(str(word), f"background: rgba({r}, {g}, {b}, {alpha:.2f})", a))
    return out


def explained_examples(explanations: dict[str, Any] | None) -> list[Example]:
    if not explanations:
        return []
    return [
        Example(highlight(e["words"]), str(e["label"]), f"{e['probability']:.0%}")
        for e in explanations["examples"]
    ]


def render_page(data: dict[str, Any], *, refresh_s: int = 30) -> str:
    """The whole dashboard as one HTML document that reloads itself every ``refresh_s`` seconds."""
    return _ENV.get_template("dashboard.html").render(
        data=data,
        refresh_s=refresh_s,
        rendered_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pills=status_pills(data["reports"]),
        drift=charts.drift_charts(data),
        moves=charts.moves_charts(data),
        volume=charts.volume_charts(data),
        labeling=charts.labeling_charts(data),
        cards=health_cards(data),
        workers=worker_cards(data["workers"]),
        redis_available=data["workers"]["available"],
        timeline=charts.timeline_chart(data),
        alerts=[r for r in reversed(data["reports"]) if r["alert"]][:20],
        explained=data.get("explanations"),
        explained_labels=charts.explanation_charts(data.get("explanations")),
        explained_examples=explained_examples(data.get("explanations")),
    )
