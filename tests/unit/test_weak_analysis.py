import json

import pytest

from streams.weak.analysis import analyse, disagree, report
from streams.weak.functions import ClickDwell, Reformulation
from streams.weak.vote_table import VoteTable

LFS = (ClickDwell(name="a"), ClickDwell(name="b"), Reformulation(name="n"))
TABLE = VoteTable(
    net={
        "q1": {"a": {"shoes": 1.0}, "b": {"shoes": 2.0}},  # agree
        "q2": {"a": {"shoes": 1.0}, "b": {"socks": 1.0}},  # disagree
        "q3": {"a": {"socks": 1.0}, "n": {"socks": -0.3}},  # for and against the same label
        "q4": {"n": {"hats": -0.3}},  # alone
        "q5": {"a": {"shoes": 1.0, "socks": -1.0, "hats": 1.0}, "b": {"hats": 0.0}},  # a: hats (tie, by name)
    },
    support={},
    searches={"q1": 2, "q2": 1, "q3": 1, "q4": 1, "q5": 1, "q6": 4},  # q6: searched, nobody voted
    lf_searches={"a": 4, "b": 3, "n": 2},
    lf_votes={"a": 6, "b": 3, "n": 2},
)
GOLD = {"q1": "shoes", "q2": "socks", "q3": "socks", "q4": "shoes", "q5": "hats"}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (("shoes", 1), ("shoes", 1), False),
        (("shoes", 1), ("socks", 1), True),
        (("shoes", 1), ("shoes", -1), True),
        (("shoes", -1), ("socks", 1), False),
        (("shoes", -1), ("socks", -1), False),  # two "not this" never contradict
        (("shoes", -1), ("shoes", -1), False),
    ],
)
def test_disagree(a, b, expected):
    assert disagree(a, b) is expected
    assert disagree(b, a) is expected


def test_coverage_overlap_conflict_and_accuracy():
    stats = {s.name: s for s in analyse(TABLE, LFS, GOLD)}
    a, b, n = stats["a"], stats["b"], stats["n"]
    assert (a.coverage, a.overlap, a.conflict) == (4 / 6, 3 / 6, 2 / 6)
    assert (a.accuracy, a.n_gold) == (3 / 4, 4)  # wrong on q2 only
    assert (b.coverage, b.overlap, b.conflict, b.accuracy) == (2 / 6, 2 / 6, 1 / 6, 1.0)  # b abstains on q5
    assert (n.coverage, n.overlap, n.conflict, n.accuracy) == (2 / 6, 1 / 6, 1 / 6, 0.5)
    assert (n.polarity, n.n_votes, n.search_coverage) == (-1, 2, 2 / 10)


def test_report_is_plain_json_and_accuracy_needs_gold():
    stats = analyse(TABLE, LFS)
    assert [s.accuracy for s in stats] == [None, None, None]
    rows = json.loads(json.dumps(report(stats)))
    assert [r["name"] for r in rows] == ["a", "b", "n"]
    assert set(rows[0]) >= {"coverage", "overlap", "conflict", "accuracy", "n_votes", "search_coverage"}
