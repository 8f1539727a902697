"""Sufficient statistics (streams.weak.incremental, streams.weak.symbolic) give the full run's table.

Random searches (any mix of clicks, carts, purchases, returns, skips and reformulations, so that
some are not linear in the propensity and are kept whole) are folded in random time buckets and
summed in another order; the assembled vote table must equal ``tabulate`` on all of them at once,
under a propensity that only exists after folding.
"""

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.dimensions import CATEGORY, INTENT_TYPE
from streams.events import FeedbackType, ItemKind
from streams.weak.functions import DEFAULT_LFS
from streams.weak.incremental import (
    DECAYED,
    Folder,
    assemble,
    decay_factor,
    impression_counts,
    record_from_json,
    record_to_json,
    with_exceptions,
)
from streams.weak.intent_types import DEFAULT_TYPE_LFS, tabulate_types
from streams.weak.policies import DirichletPosterior, Threshold, label_all, label_prior
from streams.weak.propensity import Propensity, estimate_propensity, fit_counts, impressions_from_records
from streams.weak.records import Interaction, SearchRecord
from streams.weak.symbolic import Linear, SymbolicPropensity, Undetermined, evaluate
from streams.weak.vote_table import lf_outputs, tabulate

T0 = datetime(2025, 3, 1, tzinfo=UTC)
CATALOG = {"s1": "shoes", "s2": "shoes", "k1": "socks", "k2": "socks", "h1": "hats", "g1": "guides"}
KINDS = {"g1": ItemKind.content}
PRODUCTS = ("s1", "s2", "k1", "k2", "h1", "g1", "zz")  # zz: not in the catalog
TEXTS = ("running shoes", "wool socks", "sun hat", "how to lace shoes")
HALF_LIFE_S = 2 * 86_400.0
TYPES = (FeedbackType.click, FeedbackType.add_to_cart, FeedbackType.purchase, FeedbackType.return_)


@st.composite
def records(draw: Any) -> list[SearchRecord]:
    out = []
    for n in range(draw(st.integers(1, 25))):
        shown = tuple(draw(st.permutations(PRODUCTS)))[: draw(st.integers(1, len(PRODUCTS)))]
        ts = T0 + timedelta(hours=draw(st.floats(0, 24 * 6)))
        acts = draw(st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, len(shown) - 1)), max_size=4))
        interactions = tuple(
            Interaction(kind, shown[r], r, draw(st.sampled_from((None, 2_000, 30_000))), ts)
            for kind, r in acts
        )
        nxt = draw(st.one_of(st.none(), st.sampled_from(TEXTS)))
        out.append(
            SearchRecord(
                f"q{n}",
                f"s{n % 3}",
                ts,
                draw(st.sampled_from(TEXTS)),
                shown,
                interactions,
                nxt,
                draw(st.floats(1, 120)) if nxt is not None else None,
            )
        )
    return out


def close(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            close(a[k], b[k])
    else:
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (a, b)


@settings(max_examples=60, deadline=None)
@given(
    recs=records(),
    bucket_h=st.sampled_from((6.0, 24.0, 1000.0)),
    theta=st.lists(st.floats(0.05, 1.5), min_size=4, max_size=4),
)
def test_folded_buckets_assemble_to_the_full_table(recs, bucket_h, theta):
    newest = max(r.ts for r in recs)
    folder = Folder(CATALOG, KINDS, DEFAULT_LFS, DEFAULT_TYPE_LFS, (CATEGORY, INTENT_TYPE), HALF_LIFE_S)
    buckets: dict[int, list[SearchRecord]] = {}
    for r in recs:
        buckets.setdefault(int(r.ts.timestamp() // (bucket_h * 3600)), []).append(r)
    stats: dict[Any, float] = {}
    kept = []
    for b in sorted(buckets, reverse=True):  # another order than the full run's
        anchor = datetime.fromtimestamp(b * bucket_h * 3600, UTC)
        folded = folder.fold(buckets[b], anchor)
        factor = decay_factor(anchor, newest, HALF_LIFE_S)
        for key, value in folded.stats.items():
            stats[key] = stats.get(key, 0.0) + (value * factor if key[1] in DECAYED else value)
        kept += [(record_from_json(record_to_json(r)), w * factor) for r, w in folded.exceptions]
    propensity = Propensity((1.0, *theta), max_weight=3.0)  # as if fitted on far more data
    table = assemble(stats, CATEGORY, [lf.name for lf in DEFAULT_LFS], propensity)
    table = with_exceptions(table, kept, CATALOG, DEFAULT_LFS, propensity)
    full = tabulate(recs, CATALOG, DEFAULT_LFS, propensity, now=newest, half_life_s=HALF_LIFE_S)
    types = assemble(stats, INTENT_TYPE, [lf.name for lf in DEFAULT_TYPE_LFS])
    full_types = tabulate_types(recs, KINDS, now=newest, half_life_s=HALF_LIFE_S)
    for ours, theirs in ((table, full), (types, full_types)):
        for name in ("net", "support", "searches", "lf_searches", "lf_votes", "actions", "shares"):
            close(getattr(ours, name), getattr(theirs, name))
        # and so are the labels every policy gives, abstentions included, and the functions' answers
        assert lf_outputs(ours) == lf_outputs(theirs)
        for policy in (
            DirichletPosterior(label_prior(theirs), 1.0, 0.0, 0.6),
            Threshold(min_evidence=1.0, min_confidence=0.6),
        ):
            mine, expected = label_all(ours, policy), label_all(theirs, policy)
            assert mine.keys() == expected.keys()
            for q, d in expected.items():
                assert (mine[q].label, mine[q].abstained, mine[q].reason) == (d.label, d.abstained, d.reason)
                close(mine[q].distribution, d.distribution)
    # and the propensity from summed counts is the records' own
    for method in ("harvest", "pbm"):
        fitted = fit_counts(impression_counts(stats), method)  # type: ignore[arg-type]
        assert fitted.theta == pytest.approx(estimate_propensity(recs, method=method).theta, rel=1e-9)


def test_a_purchase_the_shopper_then_reformulated_away_from_is_kept_whole():
    shown = ("s1", "k1", "h1")
    rec = SearchRecord(
        "q", "s", T0, "running shoes", shown, (Interaction(FeedbackType.purchase, "s1", 0, None, T0),),
        "trail shoes", 10.0,
    )
    folder = Folder(CATALOG, KINDS, DEFAULT_LFS, (), (CATEGORY,), None)
    folded = folder.fold([rec], T0)
    # max(purchase 3 - reformulation 0.3 * examined(0), 0) depends on theta: not linear
    assert [r for r, _ in folded.exceptions] == [rec]
    assert ("category", "shown", "running shoes", "", "s1", "0") in folded.stats  # counted all the same


def test_linear_forms_compare_only_when_the_sign_is_known():
    ips = SymbolicPropensity().weight(2)
    exam = SymbolicPropensity().examination(1)
    assert 0.5 * ips > 0 and -0.15 * exam < 0 and max(-0.15 * exam, 0.0) == 0.0
    assert (0.5 * ips) / ips == 0.5  # a vote's strength is a plain number
    with pytest.raises(Undetermined):
        _ = 3.0 - 0.3 * exam > 0
    p = Propensity((1.0, 0.5, 0.25), max_weight=10.0)
    assert evaluate((2.0 * ips + 1.0 - exam).terms, p) == pytest.approx(2.0 * 4.0 + 1.0 - 0.5)
    assert isinstance(ips + exam, Linear)


def _clicked(i: int, shown: tuple[str, ...], rank: int) -> SearchRecord:
    click = Interaction(FeedbackType.click, shown[rank], rank, None, T0)
    return SearchRecord(f"q{i}", "s", T0, "shoes", shown, (click,))


def test_counts_fit_the_same_propensity_as_impressions():
    lists = [
        (("s1", "s2", "k1"), 0),
        (("s2", "s1", "k1"), 1),
        (("k1", "s1", "s2"), 2),
        (("s1", "k1", "s2"), 0),
    ]
    recs = [_clicked(i, shown, rank) for i, (shown, rank) in enumerate(lists * 3)]
    assert len(impressions_from_records(recs)) == 36
    folded = Folder(CATALOG, KINDS, DEFAULT_LFS, (), (CATEGORY,), None).fold(recs, T0)
    for method in ("harvest", "pbm"):
        fitted = fit_counts(impression_counts(folded.stats), method)  # type: ignore[arg-type]
        assert fitted.theta == pytest.approx(estimate_propensity(recs, method=method).theta)  # type: ignore[arg-type]
