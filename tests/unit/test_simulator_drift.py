"""The simulator's drift injection: nothing changes without it, and with it the categories move
exactly as configured from the onset on."""

from collections import Counter

import pytest
from pydantic import ValidationError

from streams.simulator import DriftInjection, SimConfig, simulate


def _tops(sim, before: bool) -> Counter:
    onset = sim.drift_onset
    return Counter(
        sim.intents[q.query_id].split("/")[0] for q in sim.queries if (q.timestamp < onset) == before
    )


def test_default_config_has_no_drift_and_is_unchanged():
    plain = simulate(SimConfig(seed=3, n_searches=400))
    explicit = simulate(SimConfig(seed=3, n_searches=400, drift=None))
    assert plain.drift_onset is None
    assert [q.query_id for q in plain.queries] == [q.query_id for q in explicit.queries]
    assert [q.query for q in plain.queries] == [q.query for q in explicit.queries]


def test_new_category_appears_and_surge_grows_at_the_onset():
    sim = simulate(
        SimConfig(seed=5, n_searches=4000, drift=DriftInjection(at=0.25, surge="garden", new="pets"))
    )
    onset = sim.drift_onset
    assert onset == sim.queries[1000].timestamp
    before, after = _tops(sim, True), _tops(sim, False)
    assert sum(before.values()) == 1000
    assert before["pets"] == 0  # nobody meant it before
    assert after["pets"] / sum(after.values()) > 0.03
    share_before = before["garden"] / sum(before.values())
    share_after = after["garden"] / sum(after.values())
    assert share_after > 2 * share_before


def test_same_seed_same_drifted_traffic():
    cfg = SimConfig(seed=9, n_searches=300, drift=DriftInjection(at=0.5))
    assert [q.query for q in simulate(cfg).queries] == [q.query for q in simulate(cfg).queries]


def test_unknown_categories_are_refused():
    with pytest.raises(ValidationError, match="no simulated category"):
        DriftInjection(surge="spaceships")
    with pytest.raises(ValidationError):
        DriftInjection(at=1.0)
