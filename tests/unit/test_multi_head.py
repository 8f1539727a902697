"""One adapter, a head per label dimension: trained together, saved as one artifact, loaded back
with every head, one encoder pass answering all of them; a damaged heads file is refused."""

import json
import random
import shutil

import numpy as np
import pytest

from store.dimensions import ASK, BUY, CATEGORY, HELP, INTENT_TYPE
from trainer.artifact import HEADS, MANIFEST, load_for_inference, save_adapter
from trainer.dataset import Example, HeadRows
from trainer.exceptions import CorruptAdapterError, InvalidAdapterError
from trainer.finetune import fit
from trainer.settings import TrainSettings

LABELS = ["electronics", "fashion"]
TYPES = [ASK, BUY, HELP]
FAST = TrainSettings(min_steps=0, epochs=5, batch_size=16, learning_rate=5e-3, patience=3, seed=13)
_PRODUCTS = {
    "fashion": ["red shoe", "blue dress", "denim jacket"],
    "electronics": ["usb cable", "phone charger"],
}
_FORMS = {BUY: "{p} {n}", ASK: "how to wash {p} {n}", HELP: "refund broken {p} {n}"}


def _rows(n: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(category rows, intent-type rows) of the same kind of queries; the type is in the words."""
    rng = random.Random(seed)
    cats, types = [], []
    for i in range(n):
        label, kind = LABELS[i % 2], TYPES[i % 3]
        text = _FORMS[kind].format(p=rng.choice(_PRODUCTS[label]), n=rng.randint(1, 99))
        cats.append(Example(text, label))
        types.append(Example(text, kind))
    return cats, types


@pytest.fixture(scope="module")
def fitted(tiny_encoder_dir):
    cats, types = _rows(240, seed=1)
    head = HeadRows(INTENT_TYPE, TYPES, types[:200], types[200:])
    return fit(
        cats[:200], cats[200:], LABELS, tiny_encoder_dir, FAST, max_length=16, progress=False, heads=[head]
    )


def test_both_heads_learn_on_the_shared_encoder(fitted) -> None:
    m = fitted.metrics
    assert m["val_macro_f1"] > 0.85  # a tiny random encoder: well above chance (0.5), not perfect
    head = m["heads"][INTENT_TYPE]
    assert head["val_macro_f1"] > 0.85 and head["labels"] == 3
    assert head["train_examples"] > 200 and head["val_examples"] == 40  # with its typo copies
    assert fitted.model.head_labels == {INTENT_TYPE: TYPES}


def test_one_artifact_carries_every_head_and_answers_them_in_one_pass(fitted, tiny_encoder_dir, tmp_path):
    out = save_adapter(fitted.model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["heads"] == {INTENT_TYPE: {"labels": TYPES}}
    loaded = load_for_inference(tiny_encoder_dir, out)
    assert loaded.head_labels == {CATEGORY: LABELS, INTENT_TYPE: TYPES}
    texts = ["refund broken usb cable 7", "how to wash red shoe 3", "blue dress 12"]
    probs = loaded.predict_heads(texts)
    assert set(probs) == {CATEGORY, INTENT_TYPE}
    np.testing.assert_allclose(probs[CATEGORY], loaded.predict_proba(texts), atol=1e-6)
    np.testing.assert_allclose(probs[INTENT_TYPE].sum(axis=1), 1.0, atol=1e-5)
    assert [TYPES[i] for i in probs[INTENT_TYPE].argmax(axis=1)] == [HELP, ASK, BUY]


def test_a_single_dimension_artifact_is_unchanged(tiny_encoder_dir, tmp_path):
    cats, _ = _rows(60, seed=2)
    result = fit(
        cats[:48], cats[48:], LABELS, tiny_encoder_dir, FAST.model_copy(update={"epochs": 1}), 16, False
    )
    out = save_adapter(result.model, tmp_path / "a", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    assert "heads" not in json.loads((out / MANIFEST).read_text()) and not (out / HEADS).exists()
    assert "heads" not in result.metrics
    assert load_for_inference(tiny_encoder_dir, out).head_labels == {CATEGORY: LABELS}


def test_a_damaged_or_missing_heads_file_is_refused(fitted, tiny_encoder_dir, tmp_path):
    good = save_adapter(fitted.model, tmp_path / "good", base_dir=tiny_encoder_dir, labels=LABELS, metrics={})
    missing = shutil.copytree(good, tmp_path / "missing")
    (missing / HEADS).unlink()
    with pytest.raises(CorruptAdapterError, match=HEADS):
        load_for_inference(tiny_encoder_dir, missing)
    damaged = shutil.copytree(good, tmp_path / "damaged")
    (damaged / HEADS).write_bytes((good / HEADS).read_bytes()[:40])
    with pytest.raises(CorruptAdapterError):
        load_for_inference(tiny_encoder_dir, damaged)
    relabelled = shutil.copytree(good, tmp_path / "relabelled")
    manifest = json.loads((relabelled / MANIFEST).read_text())
    manifest["heads"][INTENT_TYPE]["labels"] = [BUY, BUY]
    (relabelled / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InvalidAdapterError, match="no usable label map"):
        load_for_inference(tiny_encoder_dir, relabelled)


def test_every_head_passes_over_its_rows_as_often_as_the_category() -> None:
    from trainer.finetune import enough_for_heads

    recipe = TrainSettings(epochs=4, patience=2, batch_size=32)
    same = enough_for_heads(recipe, 320, [200, 320])  # no head has more batches than the category
    assert (same.epochs, same.patience) == (4, 2)
    more = enough_for_heads(recipe, 320, [960])  # a head with 3x the rows: 3x the epochs
    assert (more.epochs, more.patience) == (12, 6)


def test_the_gate_judges_each_dimension_and_names_it() -> None:
    from trainer.gate_rules import DimensionReports, decide
    from trainer.settings import GateSettings

    def report(f1: float) -> dict:
        return {"n": 100, "macro_f1": f1, "accuracy": f1, "slices": {}}

    settings = GateSettings(min_gold_for_floors=10**6)
    base = report(0.9)
    good = {"intent_type": DimensionReports(report(0.8), report(0.3), report(0.79), True)}
    blessed = decide(base, None, settings, dimensions=good)
    assert blessed.blessed
    assert any("beats intent_type label_prior" in r for r in blessed.reasons)
    assert any(r.startswith("intent_type/overall macro_f1 0.8000 vs champion") for r in blessed.reasons)

    worse = {"intent_type": DimensionReports(report(0.6), report(0.3), report(0.8), True)}
    refused = decide(base, None, settings, dimensions=worse)
    assert not refused.blessed and refused.reasons[0].startswith("intent_type/overall macro_f1 regressed")

    dropped = {"intent_type": DimensionReports(None, {}, None, True)}
    assert "the champion serves it" in decide(base, None, settings, dimensions=dropped).reasons[0]
    never_had = {"intent_type": DimensionReports(None, {}, None, False)}
    assert decide(base, None, settings, dimensions=never_had).blessed
