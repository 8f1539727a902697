"""The explanations panel: per label, the words that push recent traffic toward it most.

One horizontal bar chart per label (the labels with most traffic first), a bar per word of its
total push (attribution x searches, summed over the sampled queries), green toward the label and
red away from it. The hover text gives the numbers an operator checks before trusting a word:
mean attribution, queries and searches, and the share of the word's queries that got this label.
"""

from collections.abc import Sequence
from typing import Any

import pygal
from markupsafe import Markup

from intentloop.dashboard.charts.base import ALERT, OK, chart_style, new_chart, render

MAX_LABELS = 8
# A word seen in at least this many sampled queries, nearly all of them explained for one label:
# the model may have learnt the word (a brand, a SKU prefix) instead of what the shopper wants.
CUE_SHARE = 0.95
CUE_QUERIES = 3


def is_cue(word: dict[str, Any]) -> bool:
    """Whether a word looks like a spurious cue: only ever seen with this label, often enough."""
    return bool(word["share"] >= CUE_SHARE and word["queries"] >= CUE_QUERIES)


def top_labels(labels: dict[str, list[dict[str, Any]]], n: int = MAX_LABELS) -> list[str]:
    """The ``n`` labels with most traffic. A label's queries are not stored, so the searches of its
    most searched word stand in for them (every explained query of the label holds some word)."""

    def traffic(label: str) -> int:
        return max((int(w["searches"]) for w in labels[label]), default=0)

    return sorted(labels, key=lambda label: (-traffic(label), label))[:n]


def _tooltip(label: str, w: dict[str, Any]) -> str:
    return (
        f"{w['word']} -> {label}: total {w['total']:+.3g}, mean {w['attribution']:+.3f} over "
        f"{w['queries']} queries ({w['searches']} searches); {w['share']:.0%} of its queries got {label}"
    )


def word_push_chart(label: str, words: Sequence[dict[str, Any]]) -> Markup:
    """A bar per word of ``label`` (largest total push on top); cue words are marked with ``*``."""
    rows = list(reversed(words))  # pygal draws the first label lowest
    chart = new_chart(
        pygal.HorizontalBar,
        "explain",
        label,
        "no word explained",
        width=420,
        height=70 + 24 * max(len(rows), 1),
        style=chart_style([OK]),
        show_legend=False,
        x_labels=[w["word"][:24] + (" *" if is_cue(w) else "") for w in rows],
        print_values=True,
        value_formatter=lambda v: f"{v:+.3g}",
    )
    chart.add(
        "total push",
        [
            {
                "value": float(w["total"]),
                "color": OK if w["total"] >= 0 else ALERT,
                "tooltip": _tooltip(label, w),
            }
            for w in rows
        ],
    )
    return render(chart)


def explanation_charts(explanations: dict[str, Any] | None) -> list[tuple[str, Markup, list[str]]]:
    """(label, its chart, its spurious-cue words) for up to ``MAX_LABELS`` labels of the newest
    global view; empty when none was computed."""
    if not explanations:
        return []
    labels = explanations["labels"]
    return [
        (label, word_push_chart(label, labels[label]), [w["word"] for w in labels[label] if is_cue(w)])
        for label in top_labels(labels)
    ]
