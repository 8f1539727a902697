"""The TF-IDF baseline and the training benchmark's snapshot (no encoder training here)."""

import numpy as np
import pytest

from intentloop.bench.train import build_snapshot
from store.settings import TaxonomySettings
from trainer.baselines import train_tfidf
from trainer.dataset import Example
from trainer.exceptions import NotEnoughDataError
from trainer.split import is_validation


def test_tfidf_learns_words_and_maps_columns_onto_the_label_list():
    train = [Example(f"red shoe {i}", "fashion") for i in range(20)]
    train += [Example(f"usb cable {i}", "electronics") for i in range(20)]
    # "toys" has no training example: its column exists and is 0.
    model = train_tfidf(train, ["electronics", "fashion", "toys"], seed=1)
    proba = model.predict_proba(["red shoe 99", "usb cable 7"])
    assert proba.shape == (2, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert proba[:, 2].tolist() == [0.0, 0.0]
    assert proba[0].argmax() == 1 and proba[1].argmax() == 0
    assert model.predict_proba([]).shape == (0, 3)
    assert model.metrics["train_examples"] == 40


def test_tfidf_needs_two_labels():
    with pytest.raises(NotEnoughDataError):
        train_tfidf([Example("a", "x"), Example("b", "x")], ["x"])


def test_bench_snapshot_is_deterministic_and_held_out_by_query():
    a = build_snapshot(1500, seed=3, test_fraction=0.2, taxonomy=TaxonomySettings())
    b = build_snapshot(1500, seed=3, test_fraction=0.2, taxonomy=TaxonomySettings())
    assert a == b
    assert a.searches == 1500 == sum(a.counts.values())
    train_texts = {e.text for e in a.train}
    test_texts = {q for q, _ in a.test}
    assert not train_texts & test_texts
    unseen = {q for q, kinds in a.kinds.items() if "unseen_phrasing" in kinds}
    assert unseen and not unseen & train_texts  # phrasings held out of the vocabulary: never trained on
    assert all(is_validation(q, 0.2) or q in unseen for q in test_texts)
    assert len(a.train) + sum(a.counts[q] for q in test_texts) == a.searches
    assert set(a.labels) >= {label for _, label in a.test} and len(a.labels) == 12


def test_full_finetune_trains_every_weight_and_is_scored_like_an_adapter(tiny_encoder_dir):
    from trainer.baselines import train_full_finetune
    from trainer.evaluation import evaluate
    from trainer.settings import GateSettings, TrainSettings

    rng = np.random.default_rng(0)
    words = {
        "fashion": ["red shoe", "blue dress", "wool scarf"],
        "electronics": ["usb cable", "hdmi adapter"],
    }
    rows = [
        (f"{w} {rng.integers(1, 99)}", label) for label, ws in words.items() for w in ws for _ in range(30)
    ]
    train = [Example(t, label) for t, label in rows]
    settings = TrainSettings(
        min_steps=0, epochs=3, batch_size=16, gate=GateSettings(full_ft_learning_rate=1e-3)
    )
    full = train_full_finetune(
        train, [], ["electronics", "fashion"], tiny_encoder_dir, settings, 16, progress=False
    )
    assert full.metrics["trainable_params_pct"] == 100.0 and full.metrics["method"] == "full_finetune"
    report = evaluate(full.predictor, [("usb cable 5", "electronics"), ("blue dress 7", "fashion")], {})
    assert report["accuracy"] == 1.0
