"""Drift statistics against values computed by hand from their definitions."""

import math

import pytest

from streams.drift.stats import (
    Thresholds,
    compare,
    hellinger,
    homogeneity_p_value,
    js_distance,
    linf,
    psi,
    psi_band,
)

LOOSE = Thresholds(min_samples=1, min_reference=1)


def test_js_distance_of_disjoint_and_identical_distributions():
    assert js_distance({"a": 5}, {"b": 7}) == pytest.approx(1.0)
    assert js_distance({"a": 2, "b": 6}, {"a": 1, "b": 3}) == pytest.approx(0.0, abs=1e-12)


def test_js_distance_by_hand():
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4)
    kl_pm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)  # 0.20752
    kl_qm = 1.0 * math.log2(1 / 0.75)  # 0.41504
    expected = math.sqrt(0.5 * (kl_pm + kl_qm))  # 0.55793
    assert expected == pytest.approx(0.55793, abs=1e-5)
    assert js_distance({"a": 10, "b": 10}, {"a": 4}) == pytest.approx(expected)


def test_psi_by_hand_without_and_with_smoothing():
    # 60/40 against 50/50: 0.1 ln 1.2 + (-0.1) ln 0.8 = 0.018232 + 0.022314
    assert psi({"a": 60, "b": 40}, {"a": 50, "b": 50}, smoothing=1e-12) == pytest.approx(0.040547, abs=1e-6)
    a, b = 60.5 / 101, 40.5 / 101
    expected = (a - 0.5) * math.log(a / 0.5) + (b - 0.5) * math.log(b / 0.5)
    assert psi({"a": 60, "b": 40}, {"a": 50, "b": 50}, smoothing=0.5) == pytest.approx(expected)


def test_psi_is_finite_on_empty_bins():
    value = psi({"a": 10}, {"a": 5, "b": 5}, smoothing=0.5)
    cur, ref = (10.5 / 11, 0.5 / 11), (0.5, 0.5)
    expected = sum((c - r) * math.log(c / r) for c, r in zip(cur, ref, strict=True))
    assert math.isfinite(value)
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "band"),
    [(0.0, "stable"), (0.0999, "stable"), (0.1, "moderate"), (0.2499, "moderate"), (0.25, "major")],
)
def test_psi_bands(value, band):
    assert psi_band(value) == band


def test_hellinger_by_hand():
    assert hellinger({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    # BC = sqrt(1/2 * 1) = 0.70711, H = sqrt(1 - BC) = 0.54120
    assert hellinger({"a": 1, "b": 1}, {"a": 3}) == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))
    assert hellinger({"a": 1, "b": 1}, {"a": 3}) == pytest.approx(0.54120, abs=1e-5)


def test_linf_is_the_largest_share_move():
    assert linf({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)
    assert linf({"a": 1, "c": 1}, {"a": 1, "b": 1}) == pytest.approx(0.5)


def test_no_data_on_a_side_is_nan_not_zero():
    for fn in (js_distance, hellinger, linf):
        assert math.isnan(fn({}, {"a": 1}))
    assert math.isnan(psi({"a": 1}, {}))
    assert homogeneity_p_value({}, {"a": 1}) == 1.0


def test_too_few_samples_never_alert_however_different():
    c = compare({"a": 50}, {"b": 500}, Thresholds(min_samples=200))
    assert c.status == "insufficient"
    assert not c.alert
    assert c.js == pytest.approx(1.0)  # still computed, for the charts
    assert "too few samples" in c.reasons[0]


def test_sampling_noise_does_not_alert():
    c = compare({"a": 105, "b": 95, "c": 100}, {"a": 100, "b": 100, "c": 100}, LOOSE)
    assert c.status == "ok"
    assert c.reasons == []


def test_a_big_significant_shift_alerts_with_its_reasons():
    c = compare({"a": 150, "b": 50}, {"a": 50, "b": 150}, LOOSE)
    assert c.alert
    assert c.p_value < 1e-6
    assert any(r.startswith("psi ") for r in c.reasons)
    assert any(r.startswith("js ") for r in c.reasons)
    assert c.moves[0].label in {"a", "b"}
    assert abs(c.moves[0].delta) == pytest.approx(0.5)


def test_a_big_but_insignificant_shift_does_not_alert():
    # 6 vs 2: PSI is large, but two handfuls of samples prove little (chi2 = 4, p = 0.046)
    c = compare({"a": 6, "b": 2}, {"a": 2, "b": 6}, LOOSE)
    assert c.psi > 0.25
    assert c.p_value == pytest.approx(0.0455, abs=1e-3)
    assert c.status == "ok"


def test_new_and_vanished_labels_are_flagged_by_name():
    new = compare({"a": 100, "b": 100, "c": 30}, {"a": 100, "b": 100}, LOOSE)
    assert new.new_labels == ["c"]
    assert new.alert
    assert "new label(s): c" in new.reasons
    gone = compare({"a": 200}, {"a": 100, "b": 100}, LOOSE)
    assert gone.vanished_labels == ["b"]
    assert "vanished label(s): b" in gone.reasons
    # a rare label missing from a small window is expected, not news
    rare = compare({"a": 300}, {"a": 990, "b": 10}, LOOSE)
    assert rare.vanished_labels == []


def test_a_label_at_noise_level_in_the_reference_that_takes_off_is_new():
    # 3 stray votes in 1,000 (0.3%) are noise; 50 in 1,000 (5%) is a category arriving
    c = compare({"a": 475, "b": 475, "c": 50}, {"a": 500, "b": 497, "c": 3}, LOOSE)
    assert c.new_labels == ["c"]
    assert c.alert
    steady = compare({"a": 475, "b": 475, "c": 50}, {"a": 480, "b": 480, "c": 40}, LOOSE)
    assert steady.new_labels == []


def test_a_new_label_below_its_minimum_is_not_flagged():
    c = compare({"a": 500, "b": 500, "c": 5}, {"a": 500, "b": 500}, LOOSE)
    assert c.new_labels == []
    assert c.status == "ok"


def test_optional_thresholds_alert_only_when_set():
    cur, ref = {"a": 195, "b": 105}, {"a": 150, "b": 150}
    quiet = compare(cur, ref, Thresholds(min_samples=1, min_reference=1, psi_alert=9, js_alert=None))
    assert not quiet.alert
    loud = compare(
        cur, ref, Thresholds(min_samples=1, min_reference=1, psi_alert=9, js_alert=None, linf_alert=0.1)
    )
    assert loud.alert
    assert loud.reasons[0].startswith("linf 0.150")


def test_moderate_psi_warns():
    c = compare({"a": 1320, "b": 680}, {"a": 1000, "b": 1000}, LOOSE)
    assert 0.1 <= c.psi < 0.25
    assert c.status == "warn"


def test_statistics_are_json_ready():
    stats = compare({"a": 1}, {}, LOOSE).statistics()
    assert stats == {"js": None, "psi": None, "hellinger": None, "linf": None}
