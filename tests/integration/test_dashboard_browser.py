"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against seeded
Postgres and Redis: it loads with no console error, and every chart drew its data points."""

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from browser_helpers import chromium_page, needs_chromium
from drift_helpers import seed_champion, seed_traffic

from intentloop.dashboard import DashboardServer
from store.explanations import ExampleExplanation, GlobalView, WordPush, save_global_view
from store.registry import RedisRegistry
from streams.drift.job import run_drift_check
from streams.drift.settings import DriftSettings
from streams.simulator import DriftInjection, SimConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_VIEW = GlobalView(
    version="c0ffee00c0ffee00",
    dimension="category",
    method="occlusion",
    computed_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
    words=[
        WordPush("garden", "acme", 0.41, 12.3, 6, 30, 1.0),
        WordPush("garden", "hose", 0.35, 8.8, 5, 25, 0.9),
        WordPush("garden", "garden hose", 0.52, 6.2, 3, 12, 1.0),
        WordPush("kitchen", "pan", 0.44, 9.1, 4, 20, 0.8),
        WordPush("kitchen", "rusty", -0.05, -0.4, 2, 8, 0.5),
    ],
    examples=[
        ExampleExplanation(
            "acme garden hose", "garden", 0.93, 12, [("acme", 0.4), ("garden", 0.2), ("hose", 0.3)]
        ),
        ExampleExplanation("<b>pan</b> lid", "kitchen", 0.71, 5, [("<b>pan</b>", 0.5), ("lid", -0.1)]),
    ],
)


@needs_chromium
def test_dashboard_renders_in_headless_chromium(db, redis_url, redis_prefix, tmp_path: Path):
    sim = simulate(SimConfig(seed=7, n_searches=4000, drift=DriftInjection(at=0.5)))
    assert sim.drift_onset is not None
    seed_traffic(db, sim)
    seed_champion(db, sim, trained_at=sim.drift_onset)
    settings = DriftSettings(window_s=10, clock="events", settle_s=0, min_samples=100, min_reference=100)
    result = run_drift_check(db, settings, since=sim.queries[0].timestamp)
    assert result.alerts, "the seeded drift gives the page alerts to draw"

    with db.session() as session:
        save_global_view(session, _VIEW)
    registry = RedisRegistry(redis_url, prefix=redis_prefix)
    registry.report_worker(
        "serve-a", {"version": "c0ffee00c0ffee00", "aliases": {"champion": "c0ffee00c0ffee00"}}
    )
    server = DashboardServer(db, registry, settings, port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert (
            'intentloop_drift_statistic{reference="training",statistic="psi",stream="weak_labels"}' in metrics
        )
        assert 'intentloop_worker_version{version="c0ffee00c0ffee00",worker="serve-a"} 1.0' in metrics

        with chromium_page(tmp_path / "profile", {"width": 1400, "height": 1000}) as (page, problems):
            response = page.goto(base + "/", wait_until="load")
            assert response is not None and response.status == 200
            assert "label drift" in page.title()

            def count(selector: str) -> int:
                return int(page.locator(selector).count())

            # pygal's markup: a line's points are circle.dot, a bar is g.bar with a <title> tooltip
            assert count("svg.chart") >= 10
            for stat in ("js", "psi", "hellinger", "linf"):
                assert count(f"svg.drift-{stat} circle.dot") >= 10, stat
            assert count("svg.drift-psi circle.dot.alert") >= 1
            assert count("svg.drift-psi .legend:has-text('threshold')") == 2
            assert count("svg.volume g.bar > title") >= 20
            assert count("svg.events circle.dot") >= 10
            assert count("svg.moves g.bar > title") >= 4
            assert count("svg.lfs g.bar > title") == 4
            assert count("svg.timeline circle.dot") == 2  # the version and its promotion
            assert "c0ffee00c0ffee00" in page.locator("#health").inner_text()
            assert (
                "new label" in page.locator("#alerts").inner_text()
                or "psi" in page.locator("#alerts").inner_text()
            )
            assert count("svg.explain g.bar > title") == 5  # the per-label view: 3 + 2 words
            assert count("#explanations .examples .word") == 5
            assert "only ever with this label: acme" in page.locator("#explanations").inner_text()
            box = page.locator("svg.drift-psi").bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        assert problems == []
        assert shot.stat().st_size > 20_000
        target = os.environ.get("INTENTLOOP_SCREENSHOT_DIR")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy2(shot, Path(target) / "dashboard.png")
    finally:
        server.stop()
        registry.close()
