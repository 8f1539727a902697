"""Weak evidence of the intent type (buy, browse, ask, help) from behaviour, destination and text."""

from datetime import UTC, datetime

import pytest

from streams.events import FeedbackType, ItemKind
from streams.weak.intent_types import ASK, BROWSE, BUY, HELP, TEXT_LFS, type_votes
from streams.weak.records import Interaction, SearchRecord

T0 = datetime(2026, 12, 3, tzinfo=UTC)
KINDS = {"guide": ItemKind.content, "returns": ItemKind.help}  # everything else: a product


def _record(text: str, *acts: tuple[FeedbackType, str, int | None]) -> SearchRecord:
    interactions = tuple(
        Interaction(kind, pid, pos, dwell, T0) for pos, (kind, pid, dwell) in enumerate(acts)
    )
    return SearchRecord("q", "s", T0, text, tuple(pid for _, pid, _ in acts), interactions)


def _labels(record: SearchRecord, lfs=None) -> dict[str, str]:
    votes = type_votes(record, KINDS) if lfs is None else type_votes(record, KINDS, lfs)
    return {v.lf: v.label for v in votes}


def test_behaviour_and_destination() -> None:
    click, cart, buy = FeedbackType.click, FeedbackType.add_to_cart, FeedbackType.purchase
    assert _labels(_record("usb c cable", (click, "p1", 4000), (buy, "p1", None))) == {"bought": BUY}
    carted = type_votes(_record("usb c cable", (cart, "p1", None)), KINDS)
    assert [(v.label, v.weight) for v in carted] == [(BUY, 0.7)]
    compared = _record(
        "wireless earbuds", (click, "p1", 30_000), (click, "p2", 20_000), (click, "p3", 16_000)
    )
    # a comparison is clicks on products that say browse, not the weak buy of a click
    assert _labels(compared) == {"compared": BROWSE}
    two_looks = _record("wireless earbuds", (click, "p1", 30_000), (click, "p2", 20_000), (click, "p3", 500))
    assert _labels(two_looks) == {"clicked_product": BUY}  # buyers look twice too: three long looks compare
    assert _labels(_record("charger size", (click, "guide", 60_000))) == {"read_content": ASK}
    assert _labels(_record("charger", (click, "returns", 5_000))) == {"opened_help": HELP}
    # a purchase of a help page's id is not buying; impressions alone say nothing
    assert _labels(_record("charger", (buy, "returns", None), (FeedbackType.impression, "p1", None))) == {}


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("how to return a broken charger", None),  # a question about help: both cues fire, below
        ("what charger do i need for a pixel 8", ASK),
        ("¿cómo elegir zapatillas?", ASK),
        ("wie reinige ich turnschuhe", ASK),
        ("蓝牙耳机怎么连接", ASK),
        ("refund for damaged blender", HELP),
        ("retour commande chaussures", HELP),
        ("退款 耳机", HELP),
        ("best headphones for running", BROWSE),
        ("iphone 15 vs pixel 8", BROWSE),
        ("蓝牙耳机推荐", BROWSE),
        ("iphone 15 case", None),
        ("canvas tote bag", None),  # "vs" inside a word is no comparison
        ("crop top", None),
        ("contact lenses", None),
    ],
)
def test_text_cues_in_several_languages(text: str, label: str | None) -> None:
    labels = set(_labels(_record(text), TEXT_LFS).values())
    if text.startswith("how to return"):
        assert labels == {ASK, HELP}
    else:
        assert labels == ({label} if label else set())


def test_tabulated_types_go_through_the_category_policy() -> None:
    """The intent-type table feeds the same posterior policy: a comparison outweighs its clicks, a
    question with nothing clicked leans on the prior, and the analysis reads the functions."""
    from streams.weak.analysis import analyse
    from streams.weak.intent_types import DEFAULT_TYPE_LFS, tabulate_types
    from streams.weak.policies import DirichletPosterior, label_all, label_prior

    click, buy = FeedbackType.click, FeedbackType.purchase
    records = [
        _record("usb c cable", (click, "p1", 4000), (buy, "p1", None)),
        _record("usb c cable", (click, "p1", 4000), (buy, "p1", None)),
        _record("wireless earbuds", (click, "p1", 30_000), (click, "p2", 20_000), (click, "p3", 40_000)),
        _record("charger size", (click, "guide", 60_000)),
        _record("how do i reset my router"),
    ]
    table = tabulate_types(records, KINDS)
    assert table.searches == {
        "usb c cable": 2,
        "wireless earbuds": 1,
        "charger size": 1,
        "how do i reset my router": 1,
    }
    # each search is one unit of evidence, split by its votes
    assert table.actions is not None and table.actions["usb c cable"] == {BUY: 2.0}
    assert table.actions["wireless earbuds"] == {BROWSE: 1.0}
    assert table.actions["how do i reset my router"] == {ASK: 1.0}
    policy = DirichletPosterior(label_prior(table), 1.0, 0.0, 0.6)
    labelled = label_all(table, policy)
    assert labelled["usb c cable"].label == BUY and not labelled["usb c cable"].abstained
    assert labelled["wireless earbuds"].label == BROWSE
    assert labelled["charger size"].label == ASK
    assert labelled["how do i reset my router"].label == ASK  # a question that led nowhere still asks
    stats = {s.name: s for s in analyse(table, DEFAULT_TYPE_LFS, {"charger size": ASK})}
    assert stats["read_content"].accuracy == 1.0 and stats["bought"].coverage == pytest.approx(1 / 4)
