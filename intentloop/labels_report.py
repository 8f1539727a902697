"""Text renderings of a labeling report (``intentloop labels aggregate`` / ``labels report``).

The report itself is JSON built by ``streams.labels_job.build_report`` (and kept for the
dashboard); these functions only lay it out for a terminal, so they are pure and tested as such.
"""

from datetime import datetime
from typing import Any

from streams.weak.analysis import BUCKETS


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _when(iso: str) -> str:
    """An ISO timestamp to the second (the stored ones carry microseconds nobody reads)."""
    try:
        return datetime.fromisoformat(iso).isoformat(timespec="seconds")
    except ValueError:
        return iso


def _abstentions(report: dict[str, Any]) -> str:
    reasons = sorted(report["abstained"]["by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    detail = ", ".join(f"{k} {v}" for k, v in reasons)
    return f"{report['abstained']['total']} abstained" + (f" ({detail})" if detail else "")


def decision_line(report: dict[str, Any]) -> str:
    """Which labeler was used and why, in one line."""
    cmp = report["comparison"]
    if not cmp.get("n_gold"):
        return f"{report['method']} ({cmp.get('reason', 'no gold labels to compare on')})"
    common = cmp["common"]
    return (
        f"{report['method']} (on {common['n']} gold queries both label: majority "
        f"{_pct(common['majority_accuracy'])} vs "
        f"label model {_pct(common['dawid_skene_accuracy'])}; the model needs +{cmp['margin']:.1%})"
    )


def bucket_lines(report: dict[str, Any]) -> list[str]:
    """Coverage and gold accuracy per evidence bucket (searches of the query), the tail first."""
    buckets = report.get("buckets") or {}
    order = {name: i for i, (name, _, _) in enumerate(BUCKETS)}  # JSONB does not keep key order
    lines = []
    for name, b in sorted(buckets.items(), key=lambda kv: order.get(kv[0], len(order))):
        lines.append(
            f"  {name + ' search' + ('' if name == '1' else 'es'):<13} {b['queries']} queries, "
            f"{b['labelled']} labelled ({_pct(b['coverage'])}; {_pct(b['evidence_coverage'])} of the "
            f"{b['with_evidence']} with evidence), gold accuracy {_pct(b['accuracy'])} on {b['n_gold']}"
        )
    return lines


def _gold_counts(report: dict[str, Any]) -> str:
    """How many gold labels the aggregation had, how many of them reviewers gave on the review
    page, and the labels' accuracy on those (reports from before the review queue: no split)."""
    n_gold = report.get("n_gold", report["comparison"].get("n_gold", 0))
    n_review = report.get("n_review")
    if n_review is None:
        return str(n_gold)
    line = f"{n_gold} ({n_review} reviewed)"
    if report.get("review_accuracy") is not None:
        line += f", accuracy on the reviewed {_pct(report['review_accuracy'])}"
    return line


def gold_line(report: dict[str, Any]) -> str:
    """The gold headline: ``gold N (M reviewed)``, and the accuracy on the reviewed ones."""
    return f"gold {_gold_counts(report)}"


def summary_lines(report_id: int, report: dict[str, Any]) -> list[str]:
    """What ``labels aggregate`` prints before its JSON line."""
    gold = report["gold_accuracy"]
    return [
        f"aggregated {report['searches']} searches into {report['queries']} queries: "
        f"{report['labelled']} labelled ({_pct(report['coverage'])}), {_abstentions(report)}",
        f"policy {report.get('policy', 'threshold')}: "
        f"{_pct(report.get('evidence_coverage'))} of the queries with positive evidence labelled",
        *(line.strip() for line in bucket_lines(report)),
        f"labeler {decision_line(report)}",
        f"accuracy on gold labels {_pct(gold)}" if gold is not None else "no gold labels among the labelled",
        gold_line(report),
        f"report {report_id} stored (`intentloop labels report` shows it)",
    ]


_COLUMNS = (
    "function",
    "+/-",
    "votes",
    "searches",
    "coverage",
    "overlap",
    "conflict",
    "accuracy",
    "gold",
    "reviewed",
    "n rev",
)
_ROW = "  {:<20} {:>3} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6} {:>9} {:>6}"


def report_lines(report_id: int, computed_at: datetime | str, report: dict[str, Any]) -> list[str]:
    """The readable report: headline numbers, the labeler decision, propensities, a table per function."""
    when = computed_at.isoformat(timespec="seconds") if isinstance(computed_at, datetime) else computed_at
    window = report["window"]
    theta = " ".join(f"{t:.2f}" for t in report["propensity"]["theta"])
    lines = [
        f"labeling report {report_id}, computed {when}",
        f"  window        {_when(window['since'])} .. {_when(window['until'])}",
        f"  searches      {report['searches']}, queries {report['queries']}",
        f"  labelled      {report['labelled']} ({_pct(report['coverage'])}), {_abstentions(report)}",
        f"  labeler       {decision_line(report)}",
        f"  gold          {_gold_counts(report)}",
        f"  gold accuracy {_pct(report['gold_accuracy'])} (of the labelled queries that have a gold label)",
        *bucket_lines(report),
        f"  propensity    {report['propensity']['method']}, examination by rank: {theta}",
        "",
        _ROW.format(*_COLUMNS),
    ]
    for row in report["labeling_functions"]:
        lines.append(
            _ROW.format(
                row["name"][:20],
                "+" if row["polarity"] > 0 else "-",
                row["n_votes"],
                _pct(row["search_coverage"]),
                _pct(row["coverage"]),
                _pct(row["overlap"]),
                _pct(row["conflict"]),
                _pct(row["accuracy"]),
                row["n_gold"],
                _pct(row.get("review_accuracy")),
                row.get("n_review", 0),
            )
        )
    lines.append(
        "  (searches: share of searches it voted on; coverage/overlap/conflict: shares of queries; "
        "accuracy: on the gold queries it answers;"
    )
    lines.append("   reviewed: on those of them labelled on the review page, n rev of them)")
    return lines
