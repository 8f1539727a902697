import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from streams.events import FeedbackType
from streams.weak.functions import DEFAULT_LFS, ClickDwell
from streams.weak.policies import aggregate, majority
from streams.weak.propensity import estimate_propensity
from streams.weak.records import Interaction, SearchRecord
from streams.weak.vote_table import decay, lf_outputs, tabulate

T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)
DAY = 86_400.0
CATALOG = {"s1": "shoes", "s2": "shoes", "k1": "socks", "k2": "socks", "h1": "hats"}
C, BUY, RET = FeedbackType.click, FeedbackType.purchase, FeedbackType.return_


def search(*events, text="running shoes", days_ago=0.0, shown=("s1", "k1", "h1", "s2", "k2", "zz")):
    """A search ``days_ago`` before T0; ``events`` are (type, rank); clicks dwell 30 s."""
    ts = T0 - timedelta(seconds=days_ago * DAY)
    interactions = tuple(Interaction(kind, shown[r], r, 30_000, ts) for kind, r in events)
    return SearchRecord(uuid.uuid4().hex, "s", ts, text, shown, interactions)


@pytest.mark.parametrize(
    ("age_s", "half_life_s", "weight"),
    [(0.0, DAY, 1.0), (DAY, DAY, 0.5), (3 * DAY, DAY, 0.125), (-DAY, DAY, 1.0), (1e9, None, 1.0)],
)
def test_decay_halves_every_half_life(age_s, half_life_s, weight):
    assert decay(age_s, half_life_s) == pytest.approx(weight)


def test_distribution_is_the_weighted_vote_per_label():
    records = [search((C, 0), (BUY, 0)), search((C, 1)), search((C, 5))]  # "zz" is not in the catalog
    dist = aggregate(records, CATALOG, min_evidence=0, min_confidence=0)["running shoes"]
    # shoes: click 1 + purchase 3 - three skips (s1 twice, s2) 0.45; socks: click 1 + click below a
    # skip 0.5 - two skips 0.3; hats: one skip, clipped at 0. The click on "zz" counts nowhere.
    assert dist.distribution == pytest.approx({"shoes": 3.55 / 4.75, "socks": 1.2 / 4.75})
    assert (dist.label, dist.confidence) == ("shoes", pytest.approx(3.55 / 4.75))
    assert dist.evidence == pytest.approx(5.5)  # positive weight only, before negatives
    assert not dist.abstained and dist.reason == ""


@pytest.mark.parametrize("catalog", [CATALOG, {**CATALOG, "zz": None}])  # unknown, or outside the taxonomy
def test_products_without_a_label_are_not_counted(catalog):
    table = tabulate([search((C, 5))], catalog, (ClickDwell(),))
    assert table.net == {} and table.lf_votes == {"click_dwell": 0}
    assert table.searches == {"running shoes": 1}


def test_negative_evidence_subtracts_and_never_goes_below_zero():
    records = [search((C, 0), (C, 1), (BUY, 1), (RET, 1), (RET, 1))]
    dist = aggregate(records, CATALOG, min_evidence=0, min_confidence=0)["running shoes"]
    # socks: click 1 + purchase 3 - one return 2 (per product, however often redelivered); shoes: click 1
    assert dist.distribution == pytest.approx({"socks": 2 / 3, "shoes": 1 / 3})
    only_returned = aggregate([search((RET, 2))], CATALOG)["running shoes"]
    assert (only_returned.label, only_returned.abstained, only_returned.reason) == (None, True, "no_evidence")


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([search()], "no_evidence"),  # a search without interactions still shows up, abstaining
        ([search((C, 0))], "min_evidence"),  # one click: 1.0 < 2.0
        ([search((C, 0)), search((C, 1)), search((C, 2))], "min_confidence"),  # three labels, a third each
        ([search((C, 0)), search((C, 0)), search((C, 3))], ""),
    ],
)
def test_abstention(records, reason):
    dist = aggregate(records, CATALOG, lfs=(ClickDwell(),), min_evidence=2.0, min_confidence=0.6)
    assert (dist["running shoes"].abstained, dist["running shoes"].reason) == (bool(reason), reason)


@pytest.mark.parametrize(("half_life_days", "label"), [(None, "shoes"), (30.0, "shoes"), (1.0, "socks")])
def test_recent_behaviour_counts_more(half_life_days, label):
    records = [search((C, 0), days_ago=10), search((C, 0), days_ago=10), search((C, 1), days_ago=0)]
    half_life = half_life_days * DAY if half_life_days else None
    dist = aggregate(records, CATALOG, lfs=(ClickDwell(),), half_life_s=half_life, min_evidence=0)
    assert dist["running shoes"].label == label


def test_ties_break_by_label_name_for_determinism():
    records = [search((C, 2)), search((C, 1))]
    dist = aggregate(records, CATALOG, lfs=(ClickDwell(),), min_evidence=0, min_confidence=0)
    assert dist["running shoes"].label == "hats"


def test_lf_outputs_answer_for_or_against():
    records = [search((C, 1), (BUY, 0)), search((RET, 2), text="hat")]
    outputs = lf_outputs(tabulate(records, CATALOG, DEFAULT_LFS))
    assert outputs["running shoes"] == {
        "purchase": ("shoes", 1),
        "click_dwell": ("socks", 1),
        "click_below_skips": ("socks", 1),  # +0.5 for socks outweighs -0.15 for the skipped shoes
    }
    assert outputs["hat"] == {"return": ("hats", -1)}


def buried_label_traffic(n_queries=150, searches=8, seed=1):
    """An engine that systematically ranks a confusable category above the one shoppers want.

    Per query: 5 products of the wanted label ("w", attractiveness 0.5) and 5 of a confuser ("c",
    0.2); the engine scores confusers +1 (plus noise in [0, 1.5)), so they mostly fill the top five.
    Shoppers examine rank r with probability 1/(r+1) (the PBM). Raw clicks then favour the confuser:
    0.2 * (1 + 1/2 + ... + 1/5) > 0.5 * (1/6 + ... + 1/10).
    """
    rng = random.Random(seed)
    records, catalog, gold = [], {}, {}
    for q in range(n_queries):
        text = f"query {q}"
        gold[text] = "wanted"
        products = [(f"{q}w{i}", 0.5, 0.0) for i in range(5)] + [(f"{q}c{i}", 0.2, 1.0) for i in range(5)]
        catalog |= {pid: ("wanted" if "w" in pid else "confuser") for pid, _, _ in products}
        for _ in range(searches):
            ranked = sorted(products, key=lambda p: -(p[2] + 1.5 * rng.random()))
            clicks = [
                Interaction(C, pid, r, 30_000, T0)
                for r, (pid, attractiveness, _) in enumerate(ranked)
                if rng.random() < 1.0 / (r + 1) and rng.random() < attractiveness
            ]
            shown = tuple(p[0] for p in ranked)
            records.append(SearchRecord(f"{q}-{len(records)}", "s", T0, text, shown, tuple(clicks)))
    return records, catalog, gold


def test_ips_recovers_the_label_a_misranking_engine_buries():
    records, catalog, gold = buried_label_traffic()
    propensity = estimate_propensity(records)  # from these very clicks
    assert propensity.theta[4] == pytest.approx(1 / 5, abs=0.08)

    def accuracy(p):
        dist = majority(tabulate(records, catalog, (ClickDwell(),), p), 0, 0)
        return sum(d.label == gold[q] for q, d in dist.items()) / len(gold)

    raw, ips = accuracy(None), accuracy(propensity)
    print(f"\nburied-label engine: raw-count accuracy {raw:.3f}, IPS accuracy {ips:.3f}")
    assert raw < 0.5
    assert ips > raw + 0.3
