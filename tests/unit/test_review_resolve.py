"""How reviewers' decisions on one query become one gold label and weight (store.review.resolve)."""

from datetime import UTC, datetime, timedelta

import pytest

from store.review import Decision, resolve

T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)


def _d(
    i: int,
    reviewer: str,
    label: str | None,
    *,
    action: str = "label",
    undone: bool = False,
    at: int | None = None,
) -> Decision:
    """Decision ``i`` (decided ``at`` seconds after T0, default ``i``)."""
    return Decision(
        id=i,
        item_id=1,
        dimension="category",
        query="usb c charger",
        reviewer=reviewer,
        label=label,
        action=action,
        decided_at=T0 + timedelta(seconds=i if at is None else at),
        seconds=3.0,
        undone_at=T0 + timedelta(minutes=5) if undone else None,
    )


def test_one_reviewer_gives_a_whole_row() -> None:
    assert resolve([_d(1, "alice", "electronics")], 1.0) == ("electronics", 1.0)


def test_the_majority_wins_with_its_share_of_the_votes() -> None:
    votes = [_d(1, "alice", "electronics"), _d(2, "bob", "garden"), _d(3, "carol", "electronics")]
    label, weight = resolve(votes, 1.0) or ("", 0.0)
    assert label == "electronics"
    assert weight == pytest.approx(2 / 3)


def test_a_tie_goes_to_the_latest_decision() -> None:
    assert resolve([_d(1, "alice", "electronics"), _d(2, "bob", "garden")], 1.0) == ("garden", 0.5)
    assert resolve([_d(1, "alice", "electronics", at=9), _d(2, "bob", "garden", at=3)], 1.0) == (
        "electronics",
        0.5,
    )


def test_same_time_ties_go_to_the_later_decision_id() -> None:
    votes = [_d(2, "bob", "garden", at=0), _d(1, "alice", "electronics", at=0)]
    assert resolve(votes, 1.0) == ("garden", 0.5)


def test_the_weight_scales_with_the_configured_gold_weight() -> None:
    assert resolve([_d(1, "alice", "a"), _d(2, "bob", "a")], 2.0) == ("a", 2.0)
    assert resolve([_d(1, "alice", "a"), _d(2, "bob", "b")], 2.0) == ("b", 1.0)


def test_skips_and_undone_decisions_do_not_vote() -> None:
    votes = [
        _d(1, "alice", "electronics"),
        _d(2, "bob", None, action="skip"),
        _d(3, "carol", "garden", undone=True),
    ]
    assert resolve(votes, 1.0) == ("electronics", 1.0)


@pytest.mark.parametrize(
    "votes",
    [
        [],
        [_d(1, "alice", None, action="skip")],
        [_d(1, "alice", "electronics", undone=True), _d(2, "bob", None, action="skip")],
    ],
    ids=["none", "only-skips", "undone-and-skipped"],
)
def test_nothing_active_resolves_to_none(votes: list[Decision]) -> None:
    assert resolve(votes, 1.0) is None
