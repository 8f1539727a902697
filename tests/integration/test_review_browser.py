"""The review page in a real headless Chromium (Debian's, driven by Playwright) against Postgres:
a reviewer logs in by typing their token and reviews five queries with the keyboard alone (Enter,
2, S, U, 3, 1, Enter); the stored decisions and gold rows are checked exactly, a query holding a
script tag shows as text and never runs, and the agreement panel shows Cohen's kappa."""

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import chromium_page, needs_chromium
from sqlalchemy import select

from intentloop.dashboard import DashboardServer
from intentloop.dashboard.review_auth import hash_token
from intentloop.review.settings import ReviewSettings
from store.db import Database
from store.models import GoldLabel, ReviewItem
from store.review import NewItem, add_reviewer, decide, decisions, enqueue
from streams.drift.settings import DriftSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "alice-review-token-5f1c9a"
SCRIPT_QUERY = "<script>window.__x=1</script> shoes"
QUOTES_QUERY = "\"'&<b> tag"
LABELS = ["fashion", "garden", "kitchen", "pets"]


def _item(query: str, rank: int, probs: list[tuple[str, float]], *, wanted: int = 1) -> NewItem:
    return NewItem(
        query=query,
        strategy="active",
        rank=rank,
        score=2.0 - rank / 10,
        reasons={
            "score": 2.0 - rank / 10,
            "why": [f"champion unsure: margin {probs[0][1] - probs[1][1]:.2f}"],
        },
        version="c0ffee00c0ffee00",
        suggestion=probs[0][0],
        probabilities=probs,
        weak={
            "label": probs[1][0],
            "confidence": 0.55,
            "distribution": {probs[1][0]: 0.55, probs[0][0]: 0.45},
            "abstained": True,
            "reason": "contradictory",
            "evidence": 3.0,
        },
        evidence=[
            {
                "type": "purchase",
                "product_id": "p1",
                "title": f"A {probs[1][0]} thing",
                "label": probs[1][0],
                "n": 2,
            },
            {
                "type": "click",
                "product_id": "p2",
                "title": f"A {probs[0][0]} thing",
                "label": probs[0][0],
                "n": 5,
            },
        ],
        explanation={
            "method": "occlusion",
            "label": probs[0][0],
            "words": [[w, 0.3 if i == 0 else -0.1] for i, w in enumerate(query.split())],
        },
        searches=20 - rank,
        wanted=wanted,
    )


QUEUE = [
    _item(SCRIPT_QUERY, 1, [("fashion", 0.5), ("garden", 0.3), ("kitchen", 0.2)]),
    _item("acme garden hose", 2, [("kitchen", 0.45), ("garden", 0.4), ("pets", 0.15)], wanted=2),
    _item("dog bowl", 3, [("kitchen", 0.5), ("garden", 0.3), ("pets", 0.2)]),
    _item("cast iron pan", 4, [("kitchen", 0.7), ("garden", 0.2), ("pets", 0.1)], wanted=2),
    _item("summer dress", 5, [("fashion", 0.8), ("garden", 0.1), ("pets", 0.1)]),
    _item(QUOTES_QUERY, 6, [("garden", 0.6), ("kitchen", 0.4)]),
]
# Enter accepts the script query, 2 labels the hose garden, S skips "dog bowl", U undoes that skip,
# 3 labels "dog bowl" pets, 1 labels the pan kitchen, Enter accepts "summer dress": five decisions
KEYS = ["Enter", "2", "s", "u", "3", "1", "Enter"]


_IGNORED_KEYS_JS = """() => {
  const seen = [];
  HTMLFormElement.prototype.requestSubmit = function (button) { seen.push(button ? button.value : this.id); };
  const fire = (key, options, target) => (target || document.body).dispatchEvent(
    new KeyboardEvent("keydown", { key, bubbles: true, ...options }));
  fire("1", { ctrlKey: true });
  fire("s", { metaKey: true });
  fire("u", { altKey: true });
  fire("2", {}, document.getElementById("other-label"));
  fire("1", { repeat: true });
  fire("1", {});
  fire("2", {});  // after one submit the page takes no more keys until the next one loads
  return seen;
}"""


def _seed(db: Database) -> None:
    with db.session() as session:
        add_reviewer(session, "alice", hash_token(TOKEN))
        add_reviewer(session, "bob", hash_token("bob-token"))
        enqueue(session, "category", QUEUE)
    with db.session() as session:  # bob reviewed the two overlap items before: the agreement panel
        ids = {r.norm_text: r.id for r in session.scalars(select(ReviewItem))}
        decide(session, ids["acme garden hose"], "bob", "label", "garden", 5.0)
        decide(session, ids["cast iron pan"], "bob", "label", "pets", 6.0)


def _decisions(db: Database) -> list[Any]:
    with db.session() as session:
        return decisions(session)


@needs_chromium
def test_review_five_queries_with_the_keyboard(db: Database, tmp_path: Path) -> None:
    from playwright.sync_api import Dialog

    _seed(db)
    server = DashboardServer(
        db, None, DriftSettings(), port=0, review=ReviewSettings(max_seconds=600), category_labels=LABELS
    ).start()
    base = f"http://127.0.0.1:{server.port}"
    dialogs: list[str] = []
    try:
        with chromium_page(tmp_path / "profile", {"width": 1300, "height": 1000}) as (page, problems):

            def on_dialog(dialog: Dialog) -> None:  # an alert() would mean injected script ran
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)

            response = page.goto(base + "/review", wait_until="load")
            assert response is not None and response.status == 200 and page.url == base + "/review/login"
            page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")
            page.keyboard.type(TOKEN)  # into the token field, which has the focus (autofocus)
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert page.url == base + "/review", page.content()
            assert "reviewer alice" in page.locator("header").inner_text()

            # the script tag is text on the page and never ran
            assert page.locator("#query-text").inner_text() == SCRIPT_QUERY
            assert page.evaluate("window.__x") is None
            assert page.locator("script").count() == 1
            assert page.locator("#choices button[data-key]").count() == 3
            assert page.locator("#why .word").count() == 2  # the words of SCRIPT_QUERY

            shown: list[str] = []
            for key in KEYS:
                shown.append(page.locator("#query-text").inner_text())
                with page.expect_navigation(wait_until="load"):
                    page.keyboard.press(key)
            # S on "dog bowl" shows "cast iron pan"; U there brings "dog bowl" back
            assert shown == [
                SCRIPT_QUERY,
                "acme garden hose",
                "dog bowl",
                "cast iron pan",
                "dog bowl",
                "cast iron pan",
                "summer dress",
            ]
            assert page.locator("#query-text").inner_text() == QUOTES_QUERY
            assert page.evaluate("window.__x") is None
            agreement = page.locator("#agreement").inner_text()
            assert "alice · bob" in agreement and "0.33" in agreement and "50%" in agreement
            assert "5 reviewed" in page.locator("#progress").inner_text()

            # keys with Ctrl/Alt/Meta, or typed into a field, submit nothing (recorded, not sent)
            submitted = page.evaluate(_IGNORED_KEYS_JS)
            assert submitted == ["garden"]  # only the plain 1 at the end

            shot = tmp_path / "review.png"
            page.screenshot(path=str(shot), full_page=True)
    finally:
        server.stop()
    assert problems == [] and dialogs == []

    rows = [
        (d.reviewer, d.query, d.label, d.action, d.undone_at is not None, 0 < d.seconds < 120)
        for d in _decisions(db)
    ]
    assert rows == [
        ("bob", "acme garden hose", "garden", "label", False, True),
        ("bob", "cast iron pan", "pets", "label", False, True),
        ("alice", SCRIPT_QUERY, "fashion", "accept", False, True),
        ("alice", "acme garden hose", "garden", "label", False, True),
        ("alice", "dog bowl", None, "skip", True, True),
        ("alice", "dog bowl", "pets", "label", False, True),
        ("alice", "cast iron pan", "kitchen", "label", False, True),
        ("alice", "summer dress", "fashion", "accept", False, True),
    ]
    with db.session() as session:
        gold = {
            g.norm_text: (g.label, g.source, g.purpose, g.weight)
            for g in session.scalars(select(GoldLabel).where(GoldLabel.dimension == "category"))
        }
    assert gold == {
        SCRIPT_QUERY: ("fashion", "review:alice", "train", 1.0),
        "acme garden hose": ("garden", "review:alice,bob", "train", 1.0),
        "dog bowl": ("pets", "review:alice", "train", 1.0),
        "cast iron pan": ("kitchen", "review:alice,bob", "train", 0.5),  # 1-1: the latest, half weight
        "summer dress": ("fashion", "review:alice", "train", 1.0),
    }

    assert shot.stat().st_size > 20_000
    target = os.environ.get("INTENTLOOP_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(target) / "review.png")
