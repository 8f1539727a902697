"""What pushes queries toward each label, over a sample of recent traffic (the per-label view).

Every sampled query is explained for the label the version gives it; each word's attribution is
then summed per (label, word), weighted by how often the query was searched. A word's ``share`` is
the part of the sampled queries holding it that went to this label: a brand at share 1.0 over many
queries has only ever been seen with one category, the spurious cue an operator looks for. Adjacent
words that both push toward the label are also counted as a phrase ("garden hose").
"""

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from serving.explain.explainer import Explanation, explain
from serving.explain.target import Target
from serving.explain.words import split_query
from store.explanations import ExampleExplanation, GlobalView, WordPush

EXAMPLES = 50  # explanations kept as examples (most searched first)


@dataclass
class _Tally:
    total: float = 0.0
    searches: int = 0
    queries: int = 0


def explain_sample(
    queries: Iterable[tuple[str, int]],
    target: Target,
    *,
    method: str,
    budget: int,
    on_each: Callable[[], None] = lambda: None,
) -> list[tuple[Explanation, int]]:
    """Each sampled ``(query, searches)`` explained for its top label (queries without words skipped)."""
    out = []
    for text, searches in queries:
        query = split_query(text)
        if query.words:
            out.append((explain(query, target, method=method, budget=budget), searches))
        on_each()
    return out


def summarise(
    explained: list[tuple[Explanation, int]], *, version: str, dimension: str, method: str
) -> GlobalView:
    """The per-label word and phrase table, and the most searched examples, of ``explained``."""
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    holding: dict[str, int] = defaultdict(int)  # word -> sampled queries holding it (any label)
    for e, searches in explained:
        terms = _terms(e)
        for term in {t for t, _ in terms}:
            holding[term] += 1
        seen: set[str] = set()
        for term, value in terms:
            tally = tallies[(e.label, term)]
            tally.total += value * searches
            if term not in seen:  # a word twice in one query counts the query once
                seen.add(term)
                tally.searches += searches
                tally.queries += 1
    words = [
        WordPush(
            label=label,
            word=term,
            attribution=t.total / t.searches if t.searches else 0.0,
            total=t.total,
            queries=t.queries,
            searches=t.searches,
            share=t.queries / holding[term],
        )
        for (label, term), t in tallies.items()
    ]
    words.sort(key=lambda w: (w.label, -w.total))
    top = sorted(explained, key=lambda pair: -pair[1])[:EXAMPLES]
    examples = [
        ExampleExplanation(
            query=e.query,
            label=e.label,
            probability=e.probability,
            searches=searches,
            words=[(w.word, w.attribution) for w in e.words],
        )
        for e, searches in top
    ]
    return GlobalView(version, dimension, method, datetime.now(UTC), words, examples)


def _terms(e: Explanation) -> list[tuple[str, float]]:
    """The explanation's words (casefolded) and its adjacent pairs that both push toward the label."""
    words = [(w.word.casefold(), w.attribution) for w in e.words]
    phrases = [(f"{a} {b}", va + vb) for (a, va), (b, vb) in itertools.pairwise(words) if va > 0 and vb > 0]
    return words + phrases
