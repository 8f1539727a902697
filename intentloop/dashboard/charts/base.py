"""What every dashboard chart shares: pygal set up to draw offline, scriptless SVG in the page's look.

Why pygal: a maintained chart library that renders plain SVG in Python, so the page needs no
JavaScript and nothing from the network. Two of its defaults would break that and are turned off
here: the tooltip script it links from a CDN (``js=[]``) and the inline config script it always
writes (removed by an XML filter, so the page holds no ``<script>`` at all). Hover text comes from
SVG ``<title>`` elements instead (pygal's ``tooltip`` value option), which browsers show natively.

Each function returns :class:`markupsafe.Markup`: pygal escapes the text it writes, so the Jinja2
template can embed the SVG while it still escapes everything else.
"""

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

# Importing pygal appends a legacy ``sys.meta_path`` finder (``PluginImportFixer``, for its map
# plugins, unused here) that has no ``find_spec``: Python 3.11 then raises an ImportWarning on every
# failed import anywhere in the process (an optional dependency probed, say), which the test suite
# treats as an error. Take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

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
WARN = "#e8a33d"
OK = "#2ca02c"
MUTED = "#888888"
NEGATIVE = "#4e79a7"  # a label that lost share


def chart_style(colors: Sequence[str]) -> Style:
    """The page's look (system font, white plot, light guides); ``colors`` go to series in order."""
    return Style(
        background="transparent",
        plot_background="#ffffff",
        foreground="#333333",
        foreground_strong="#222222",
        foreground_subtle="#bbbbbb",
        font_family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif",
        title_font_size=12,
        label_font_size=10,
        major_label_font_size=10,
        legend_font_size=11,
        value_font_size=10,
        no_data_font_size=13,
        guide_stroke_color="#eeeeee",
        major_guide_stroke_color="#dddddd",
        colors=tuple(colors) or PALETTE,
    )


def _local_name(tag: Any) -> str:
    """An element's tag without its namespace (pygal namespaces tags only when lxml is installed)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _drop_scripts(root: Any) -> Any:
    """pygal's XML filter hook: remove the inline config script it writes for its JS tooltips."""
    for defs in [e for e in root.iter() if _local_name(e.tag) == "defs"]:
        for script in [e for e in defs if _local_name(e.tag) == "script"]:
            defs.remove(script)
    return root


def new_chart(kind: Callable[..., Any], css: str, title: str, empty: str, **config: Any) -> Any:
    """A pygal chart with the dashboard's defaults: offline, scriptless, classes the tests find."""
    config.setdefault("style", chart_style(PALETTE))
    chart = kind(
        title=title,
        classes=["chart", *css.split()],
        js=[],  # the default links pygal-tooltips.js from a CDN
        disable_xml_declaration=True,
        width=config.pop("width", 520),
        height=config.pop("height", 260),
        no_data_text=empty,
        legend_at_bottom=True,
        truncate_legend=-1,
        truncate_label=-1,
        margin=8,
        margin_right=24,  # room for the last time label, centred on the right edge
        spacing=6,
        max_scale=6,  # at most six labelled ticks on the value axis
        **config,
    )
    chart.add_xml_filter(_drop_scripts)
    return chart


def render(chart: Any) -> Markup:
    return Markup(chart.render())  # pygal escapes every text it writes


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def time_format(span: float) -> Callable[[float], str]:
    """Axis labels for epoch seconds: the clock for short spans, the date as the span grows."""
    fmt = "%H:%M:%S" if span <= 3 * 3600 else ("%d %H:%M" if span <= 3 * 86400 else "%m-%d")
    return lambda x: datetime.fromtimestamp(x, UTC).strftime(fmt)


def iso(x: float) -> str:
    return datetime.fromtimestamp(x, UTC).isoformat(timespec="seconds")


def time_axis(xs: Iterable[float]) -> dict[str, Any]:
    """pygal XY options for a time x axis: four labelled ticks from the first to the last x."""
    xs = list(xs)
    x0, x1 = min(xs), max(xs)
    span = x1 - x0
    fmt = time_format(span)
    ticks = [x0 + span * k / 3 for k in range(4)] if span else [x0]
    return {"x_labels": [{"value": x, "label": fmt(x)} for x in ticks], "x_value_formatter": fmt}
