"""``intentloop explain``: one query's explanation, or the per-label view over recent traffic.

The version is the one ``/v1/intent`` serves for the market (its champion, as the registry's audit
trail records it) unless ``--version`` names another; it is loaded exactly as an inference worker
loads it (``SharedBase.build``: hashes, manifest and warm-up checks), so the CLI and the worker
explain the same model. The per-label view samples distinct queries searched in the
``INTENTLOOP_SERVE__EXPLAIN__SAMPLE_DAYS`` days before the newest stored search, explains each for
its top label and stores the summary where the dashboard reads it (``store.explanations``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from intentloop.runtime import Runtime
from store.exceptions import IntentloopError, VersionNotFoundError
from store.explanations import GlobalView, latest_global_view, recent_queries, save_global_view
from store.labels import newest_search_ts
from store.models import AdapterVersion
from store.versions import CHAMPION, alias_name, recorded_alias

if TYPE_CHECKING:
    from serving.explain.explainer import Explanation
    from serving.explain.target import Target


@dataclass(frozen=True)
class Loaded:
    version: str
    alias: str | None  # the alias it serves under, None for an explicit --version that serves nowhere
    target: "Target"


def load_target(rt: Runtime, version: str | None, market: str | None, dimension: str) -> Loaded:
    """The version to explain (default: the market's champion), loaded as a worker loads it."""
    from serving.adapters import SharedBase
    from serving.explain.target import Target

    alias = alias_name(CHAMPION, market)
    with rt.ready_db().session() as session:
        champion = recorded_alias(session, alias)
        version = version or champion
        if version is None:
            raise IntentloopError(
                f"no {alias} yet: pass --version (see `intentloop registry list`) or promote one"
            )
        if session.get(AdapterVersion, version) is None:
            raise VersionNotFoundError(f"no adapter version {version!r}; see `intentloop registry list`")
    path, manifest = rt.artifacts.fetch(version)
    base = SharedBase(rt.settings.model.base_dir)
    adapter = base.build(version, Path(path), manifest)
    target = Target(base, adapter, dimension=dimension, chunk=rt.settings.serve.explain.chunk)
    return Loaded(version, alias if version == champion else None, target)


def explain_query(
    loaded: Loaded, text: str, *, method: str, label: str | None, budget: int, max_words: int
) -> "Explanation":
    """One query's explanation (a query longer than ``max_words`` is refused, as the worker does)."""
    from serving.exceptions import ExplainError
    from serving.explain.explainer import explain
    from serving.explain.words import split_query

    query = split_query(text)
    if not query.words:
        raise ExplainError("the query must contain non-whitespace text")
    if len(query.words) > max_words:
        raise ExplainError(
            f"query has {len(query.words)} words; explanations take at most {max_words} "
            "(INTENTLOOP_SERVE__EXPLAIN__MAX_WORDS)"
        )
    return explain(query, loaded.target, method=method, label=label, budget=budget)


def compute_global_view(
    rt: Runtime, loaded: Loaded, *, method: str, on_total: Callable[[int], None], on_each: Callable[[], None]
) -> GlobalView:
    """Explain a sample of recent traffic with ``loaded``'s version and store the per-label view."""
    from serving.explain.global_view import explain_sample, summarise

    cfg = rt.settings.serve.explain
    with rt.ready_db().session() as session:
        newest = newest_search_ts(session)
        # counted back from the newest stored search, as the label aggregation counts its window: a
        # replayed log is explained as live traffic would have been
        since = (newest or datetime.now(UTC)) - timedelta(days=cfg.sample_days)
        sample = recent_queries(session, since=since, limit=cfg.sample)
    if not sample:
        raise IntentloopError("no searches stored to explain: ingest some traffic first")
    on_total(len(sample))
    explained = explain_sample(sample, loaded.target, method=method, budget=cfg.budget, on_each=on_each)
    view = summarise(explained, version=loaded.version, dimension=loaded.target.dimension, method=method)
    with rt.ready_db().session() as session:
        save_global_view(session, view)
    return view


def stored_view(rt: Runtime, dimension: str, version: str | None) -> GlobalView | None:
    with rt.ready_db().session() as session:
        return latest_global_view(session, dimension, version)
