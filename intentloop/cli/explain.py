"""``intentloop explain``: why a version gives a query its label, or what pushes traffic toward a label."""

import json
import os
from dataclasses import asdict
from typing import Any, get_args

import click

from intentloop.cli.common import runtime
from serving.settings import ExplainMethod
from store.dimensions import CATEGORY

_METHODS = list(get_args(ExplainMethod))
_BAR = 24  # characters of the widest attribution bar


@click.command("explain")
@click.argument("query", required=False)
@click.option("--version", default=None, help="Adapter version [default: the market's champion].")
@click.option(
    "--label", default=None, help="Label to explain [default: the top one]; alone: the per-label view."
)
@click.option(
    "--method", type=click.Choice(_METHODS), default=None, help="[default: INTENTLOOP_SERVE__EXPLAIN__METHOD]"
)
@click.option("--dimension", default=CATEGORY, show_default=True, help="Label dimension (e.g. intent_type).")
@click.option("--market", default=None, help="Market whose champion answers [default: the default market].")
@click.option("--stored", is_flag=True, help="Per-label view: show the last stored one, compute nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explain_cmd(
    query: str | None,
    version: str | None,
    label: str | None,
    method: str | None,
    dimension: str,
    market: str | None,
    stored: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Explain QUERY: each word's push toward the label, the probability, and the version that answered.

    Without QUERY: the per-label view. A sample of recent traffic (INTENTLOOP_SERVE__EXPLAIN__SAMPLE
    distinct queries of the last SAMPLE_DAYS days) is explained with the version, the words and
    phrases that push queries toward each label are summed by traffic, stored for the dashboard, and
    printed (for --label only, or every label). A word at share 1.00 over several queries has only
    been seen with that label: check it is not a spurious cue (a brand, a shop name).
    """
    from intentloop import explanations as job

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    rt = runtime()
    cfg = rt.settings.serve.explain
    method = method or cfg.method
    if query is None and stored:
        view = job.stored_view(rt, dimension, version)
        if view is None:
            raise click.ClickException("no per-label view stored yet: run `intentloop explain --label LABEL`")
        _print_view(view, label, as_json)
        return
    loaded = job.load_target(rt, version, market, dimension)
    if query is not None:
        e = job.explain_query(
            loaded, query, method=method, label=label, budget=cfg.budget, max_words=cfg.max_words
        )
        out: dict[str, Any] = {**asdict(e), "alias": loaded.alias}
        click.echo(json.dumps(out, ensure_ascii=False) if as_json else _query_table(out))
        return
    from tqdm import tqdm

    bar = tqdm(desc="explaining recent traffic", unit="query", disable=quiet or as_json)
    view = job.compute_global_view(
        rt, loaded, method=method, on_total=lambda n: setattr(bar, "total", n), on_each=bar.update
    )
    bar.close()
    _print_view(view, label, as_json)


def _query_table(e: dict[str, Any]) -> str:
    served = f" ({e['alias']})" if e["alias"] else ""
    lines = [
        f"version {e['version']}{served}, {e['dimension']} {e['label']!r} p={e['probability']:.3f} "
        f"(empty query {e['empty_probability']:.3f}); method {e['method']}, {e['elapsed_ms']:.0f} ms, "
        f"{e['model_calls']} model calls",
        "top labels: " + ", ".join(f"{lab} {p:.3f}" for lab, p in e["top_labels"]),
    ]
    widest = max((abs(w["attribution"]) for w in e["words"]), default=0.0) or 1.0
    for w in e["words"]:
        a = w["attribution"]
        bar = ("+" if a >= 0 else "-") * round(abs(a) / widest * _BAR)
        lines.append(f"  {w['word']:<20} {a:+.4f} {bar}")
    for m in e["members"] or []:
        lines.append(
            f"  member {m['name']} ({m['kind']}, weight {m['weight']:.2f}): p={m['probability']:.3f}, "
            f"moved the decision {m['moved']:+.3f}"
        )
    return "\n".join(lines)


def _print_view(view: Any, label: str | None, as_json: bool) -> None:
    words = [w for w in view.words if label is None or w.label == label]
    if label is not None and not words:
        known = sorted({w.label for w in view.words})
        raise click.ClickException(f"no sampled query was given {label!r}; labels in the view: {known}")
    if as_json:
        data = asdict(view)
        data["words"] = [asdict(w) for w in words]
        click.echo(json.dumps(data, default=str, ensure_ascii=False))
        return
    click.echo(
        f"version {view.version}, {view.dimension}, method {view.method}, "
        f"computed {view.computed_at:%Y-%m-%d %H:%M}"
    )
    for lab in sorted({w.label for w in words}):
        rows = [w for w in words if w.label == lab][:12]
        click.echo(f"\n{lab}: words and phrases that push queries toward it (by traffic)")
        for w in rows:
            cue = "  <- only ever with this label" if w.share >= 0.95 and w.queries >= 3 else ""
            click.echo(
                f"  {w.word:<24} total {w.total:+9.3f}  mean {w.attribution:+.3f}  "
                f"queries {w.queries:>4}  share {w.share:.2f}{cue}"
            )
