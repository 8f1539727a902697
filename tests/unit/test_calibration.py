"""Temperature scaling (trainer/calibration.py) on a deliberately over-confident model."""

import numpy as np
import pytest

from trainer.calibration import ece, fit_temperature, log_probabilities, nll, softmax


def _calibrated(n, labels, seed):
    """Logits and labels drawn from their own softmax: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, labels))
    p = softmax(z)
    y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return z, y


def _overconfident(n=4000, labels=5, seed=0):
    """A calibrated model's logits x3: the same rankings, far more confident than it is right."""
    z, y = _calibrated(n, labels, seed)
    return z * 3.0, y


def test_temperature_lowers_ece_and_keeps_every_argmax():
    z, y = _overconfident()
    fit = fit_temperature(z, y)
    assert fit.temperature == pytest.approx(3.0, rel=0.15)  # the over-confidence is undone
    assert fit.ece_before > 0.1 and fit.ece_after < fit.ece_before / 3
    assert fit.nll_after < fit.nll_before
    assert np.array_equal(softmax(z, fit.temperature).argmax(axis=1), z.argmax(axis=1))
    assert fit.ece_after == pytest.approx(ece(softmax(z, fit.temperature), y))
    assert fit.report()["rows"] == len(y)


def test_a_calibrated_model_keeps_a_temperature_near_one():
    z, y = _calibrated(4000, 4, seed=1)
    assert fit_temperature(z, y).temperature == pytest.approx(1.0, abs=0.1)


def test_log_probabilities_are_clipped_and_nll_matches_by_hand():
    logp = log_probabilities(np.array([[1.0, 0.0], [0.25, 0.75]]))
    assert logp[0, 1] == pytest.approx(np.log(1e-6))
    assert nll(np.log(np.array([[0.5, 0.5], [0.25, 0.75]])), np.array([0, 1])) == pytest.approx(
        -(np.log(0.5) + np.log(0.75)) / 2
    )


def test_fit_temperature_rejects_mismatched_rows():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
