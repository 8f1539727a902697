"""The trainer's fusion step (trainer/fused_training.py): members on training rows only, the
leakage rule between weak fusion rows and the memory, and the plain-adapter fallback."""

import zlib

import numpy as np
import pytest

from trainer import fused_training
from trainer.dataset import Example
from trainer.fused_training import FusionRow, fit_fused, fusion_rows_of
from trainer.settings import FusionSettings

LABELS = ["electronics", "fashion", "garden"]
_WORDS = {
    "electronics": ["usb cable", "phone charger", "hdmi adapter", "wireless mouse"],
    "fashion": ["red shoe", "blue dress", "denim jacket", "wool scarf"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray"],
}


def _queries(start: int, n: int) -> list[tuple[str, str]]:
    """``n`` distinct (query, label) pairs, labels in turn, numbered from ``start``."""
    out = []
    for i in range(start, start + n):
        label = LABELS[i % len(LABELS)]
        out.append((f"{_WORDS[label][i % 4]} {i}", label))
    return out


class _NoisyEncoder:
    """A stand-in for the adapter: right on about three queries in four (by a hash of the text)."""

    def __init__(self, truth: dict[str, str]) -> None:
        self.truth = truth

    @property
    def labels(self) -> list[str]:
        return list(LABELS)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), len(LABELS)), 0.1)
        for i, text in enumerate(texts):
            right = LABELS.index(self.truth[text])
            h = zlib.crc32(text.encode())
            out[i, right if h % 4 else (right + 1) % len(LABELS)] = 0.8
        return out


@pytest.fixture
def task():
    """Training rows, fusion rows (every third one gold) and evidence for every query: the memory
    agrees with each query's label, as clicks do on the queries they labelled."""
    train = [Example(q, label, weight=0.5 + (i % 3) / 4) for i, (q, label) in enumerate(_queries(0, 90))]
    fusion = [FusionRow(q, label, gold=i % 3 == 0) for i, (q, label) in enumerate(_queries(1000, 120))]
    evidence = {r.text: {r.label: 6.0} for r in train} | {r.query: {r.label: 6.0} for r in fusion}
    searches = {q: 4 for q in evidence}
    truth = {r.text: r.label for r in train} | {r.query: r.label for r in fusion}
    return train, fusion, evidence, searches, _NoisyEncoder(truth)


def _settings(**kw) -> FusionSettings:
    return FusionSettings(min_rows=50, **kw)


def test_members_train_on_the_training_rows_only_and_the_fusion_on_the_others(task, monkeypatch):
    train, fusion, evidence, searches, encoder = task
    seen: list[list[Example]] = []
    real = fused_training.train_lexical

    def spy(rows, labels, **kw):
        seen.append(list(rows))
        return real(rows, labels, **kw)

    monkeypatch.setattr(fused_training, "train_lexical", spy)
    out = fit_fused(encoder, train, fusion, evidence, searches, LABELS, _settings())
    assert out.parts is not None, out.report
    (lexical_rows,) = seen
    assert lexical_rows == train  # same rows, same weights as the adapter's
    assert not {e.text for e in lexical_rows} & {r.query for r in fusion}
    assert out.parts.fusion.report["rows"] == len(fusion)
    assert set(out.parts.fusion.members) == {"lora", "tfidf", "memory"}
    assert out.report["fusion_rows"] == 120
    assert (out.report["fusion_gold_rows"], out.report["fusion_weak_rows"]) == (40, 80)
    assert out.report["method"] in ("loglinear", "stacking")
    assert set(out.report["member_weights"]) == {"lora", "tfidf", "memory"}
    for key in ("temperature", "ece_before", "ece_after", "memory_queries"):
        assert out.report[key] is not None


def test_weak_fusion_rows_read_memory_absent_at_fit_time_gold_rows_present(task, monkeypatch):
    train, fusion, evidence, searches, encoder = task
    fitted = {}
    real = fused_training.fit_fusion

    def spy(member_probs, features, y, labels, method, **kw):
        fitted["features"], fitted["y"] = features, list(y)
        return real(member_probs, features, y, labels, method, **kw)

    monkeypatch.setattr(fused_training, "fit_fusion", spy)
    out = fit_fused(encoder, train, fusion, evidence, searches, LABELS, _settings())
    assert out.parts is not None
    gold = {r.query: r.gold for r in fusion}
    ordered = sorted(gold)  # fusion rows are fitted in query order
    present = dict(zip(ordered, fitted["features"].memory_present.tolist(), strict=True))
    assert present == gold  # weak rows: memory absent; gold rows: memory present
    assert out.report["fusion_memory_rows"] == 40
    # the published memory was built from every query's evidence, the weak rows' included
    weak = [q for q, g in gold.items() if not g]
    assert (out.parts.memory.evidence(weak) > 0).all()
    assert out.report["memory_queries"] == len(evidence)
    assert out.report["memory_queries_at_fit"] == len(evidence) - len(weak)
    # gold rows show the memory right where it knows: the fusion gives it weight
    assert out.report["member_weights"]["memory"] > 0


def test_without_gold_fusion_rows_the_memory_gets_no_weight(task):
    train, fusion, evidence, searches, encoder = task
    weak_only = [r._replace(gold=False) for r in fusion]
    out = fit_fused(encoder, train, weak_only, evidence, searches, LABELS, _settings(method="loglinear"))
    assert out.parts is not None
    assert out.report["fusion_memory_rows"] == 0
    assert out.report["member_weights"]["memory"] == 0.0


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (FusionSettings(min_rows=121), "120 fusion rows < INTENTLOOP_TRAIN__FUSION__MIN_ROWS 121"),
        (FusionSettings(min_rows=50, enabled=False), "fusion disabled"),
    ],
)
def test_too_few_fusion_rows_or_disabled_publishes_the_plain_adapter(task, monkeypatch, settings, reason):
    train, fusion, evidence, searches, encoder = task
    monkeypatch.setattr(fused_training, "train_lexical", pytest.fail)  # nothing is trained
    out = fit_fused(encoder, train, fusion, evidence, searches, LABELS, settings)
    assert out.parts is None
    assert reason in out.report["skipped"]
    assert out.report["fusion_rows"] == 120


def test_rows_of_labels_outside_the_run_do_not_count(task):
    train, fusion, evidence, searches, encoder = task
    extra = [FusionRow(f"mystery {i}", "toys", gold=True) for i in range(30)]
    out = fit_fused(
        encoder, train, [*fusion, *extra], evidence, searches, LABELS, FusionSettings(min_rows=121)
    )
    assert out.parts is None and out.report["fusion_rows"] == 120


def test_fusion_rows_of_the_validation_split_keep_their_gold_flag():
    rows = fusion_rows_of([Example("red shoe", "fashion", 0.3, gold=True), Example("usb", "electronics")])
    assert rows == [FusionRow("red shoe", "fashion", True), FusionRow("usb", "electronics", False)]
