"""The dashboard's charts as inline SVG, one function per panel, drawn by pygal (see ``base``)."""

from intentloop.dashboard.charts.activity import labeling_charts, timeline_chart, volume_charts
from intentloop.dashboard.charts.drift import drift_charts, moves_charts, pair_style
from intentloop.dashboard.charts.explanations import explanation_charts

__all__ = [
    "drift_charts",
    "explanation_charts",
    "labeling_charts",
    "moves_charts",
    "pair_style",
    "timeline_chart",
    "volume_charts",
]
