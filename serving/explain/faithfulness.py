"""ERASER-style faithfulness of word attributions (DeYoung et al., 2020, "ERASER").

An attribution is faithful when the words it ranks highest are the ones the model relies on:

* **comprehensiveness** = p(query) - p(query without its top-k% words): higher is better (the
  prediction collapses without them);
* **sufficiency** = p(query) - p(only its top-k% words): lower is better (they carry it alone).

Both are averaged over the bins 1, 5, 10, 20 and 50% (AOPC); a query of a few words gets at least
one word per bin, so on an eight-word query the bins remove 1, 1, 1, 2 and 4 words. Every figure
is compared with random rankings of the same words scored in the same run (averaged over
``random_rankings`` seeded permutations): an explanation is worth showing only if it beats chance.
"""

import math
from dataclasses import dataclass

import numpy as np

from serving.explain.target import Target
from serving.explain.words import Query

BINS = (0.01, 0.05, 0.10, 0.20, 0.50)


@dataclass(frozen=True)
class Faithfulness:
    comprehensiveness: float
    sufficiency: float


def top_k(n_words: int, share: float) -> int:
    """Words in the ``share`` bin of a query of ``n_words`` (at least one, at most all)."""
    return min(n_words, max(1, math.ceil(share * n_words)))


def masks(ranking: np.ndarray, bins: tuple[float, ...] = BINS) -> tuple[list[list[bool]], list[list[bool]]]:
    """For each bin, the keep-masks of 'without the top-k' and 'only the top-k' under ``ranking``
    (word indices, most important first)."""
    n = len(ranking)
    without, only = [], []
    for share in bins:
        top = set(ranking[: top_k(n, share)].tolist())
        without.append([i not in top for i in range(n)])
        only.append([i in top for i in range(n)])
    return without, only


def score_rankings(query: Query, target: Target, rankings: list[np.ndarray]) -> list[Faithfulness]:
    """AOPC comprehensiveness and sufficiency of each ranking, all texts scored in one go."""
    texts = [query.text]
    for ranking in rankings:
        without, only = masks(ranking)
        texts += [query.keep(m) for m in without] + [query.keep(m) for m in only]
    probs = target.probabilities(texts)
    full, rest = float(probs[0]), probs[1:]
    k = len(BINS)
    out = []
    for r in range(len(rankings)):
        block = rest[r * 2 * k : (r + 1) * 2 * k]
        out.append(Faithfulness(float(np.mean(full - block[:k])), float(np.mean(full - block[k:]))))
    return out


def ranking_of(attributions: np.ndarray) -> np.ndarray:
    """Word indices by attribution, highest first (ties broken by position)."""
    return np.argsort(-np.asarray(attributions), kind="stable")


def random_rankings(n_words: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(n_words) for _ in range(count)]
