"""Attribution methods on a tiny model: sums, signs, word merging, labels, members, and a planted cue."""

import numpy as np
import pytest
from serving_helpers import LABELS, make_versions

from serving.adapters import SharedBase
from serving.exceptions import ExplainError
from serving.explain.explainer import explain
from serving.explain.faithfulness import masks, random_rankings, ranking_of, score_rankings, top_k
from serving.explain.global_view import explain_sample, summarise
from serving.explain.methods import METHODS, attribute
from serving.explain.target import Target
from serving.explain.words import split_query
from serving.synthetic import synthetic_fused_adapter
from store.artifacts import ArtifactStore
from trainer.artifact import save_adapter
from trainer.dataset import Example
from trainer.finetune import fit
from trainer.settings import TrainSettings

QUERY = "unbelievably comfortable red running shoes"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("explain-artifacts"))


@pytest.fixture(scope="module")
def base(tiny_encoder_dir):
    return SharedBase(tiny_encoder_dir)


@pytest.fixture(scope="module")
def adapter(store, base, tiny_encoder_dir):
    (version,) = make_versions(store, tiny_encoder_dir, [7])
    path, manifest = store.fetch(version)
    return base.build(version, path, manifest)


@pytest.fixture
def target(base, adapter):
    return Target(base, adapter, label="fashion", chunk=4)


def test_shap_owen_values_add_up_to_the_query_minus_the_empty_query(target):
    query = split_query(QUERY)
    values = attribute("shap", query, target, budget=64)
    full, empty = target.probabilities([query.text, ""])
    assert values.shape == (5,)
    assert values.sum() == pytest.approx(full - empty, abs=1e-6)


def test_occlusion_is_the_drop_when_each_word_is_left_out(target):
    query = split_query(QUERY)
    values = attribute("occlusion", query, target, budget=0)
    full = target.probabilities([query.text])[0]
    without = target.probabilities([query.keep([j != i for j in range(5)]) for i in range(5)])
    np.testing.assert_allclose(values, full - without, atol=1e-6)


def test_one_word_queries_get_the_whole_difference_from_every_sampling_method(target):
    query = split_query("shoes")
    full, empty = target.probabilities(["shoes", ""])
    for method in ("shap", "lime", "occlusion"):
        assert attribute(method, query, target, budget=16) == pytest.approx([full - empty])


def test_ig_merges_sub_word_pieces_onto_the_words_typed(target, base):
    query = split_query(QUERY)
    pieces = base.tokenizer.tokenize("unbelievably")
    assert len(pieces) > 1  # the test is about merging: the first word must be split by the tokenizer
    values = attribute("ig", query, target, budget=32)
    assert values.shape == (5,) and np.isfinite(values).all() and np.abs(values).sum() > 0


def test_ig_follows_the_input_template(store, base, tiny_encoder_dir, tmp_path):
    import json
    import shutil

    (version,) = make_versions(store, tiny_encoder_dir, [8])
    path, _ = store.fetch(version)
    copy = tmp_path / "templated"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["input_format"] = {**manifest.get("input_format", {}), "template": "query: {text}"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    templated = store.publish(copy)
    path, manifest = store.fetch(templated)
    t = Target(base, base.build(templated, path, manifest), label="home")
    values = attribute("ig", split_query("blue denim jacket"), t, budget=16)
    assert values.shape == (3,) and np.isfinite(values).all()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_explains_the_top_label_unless_asked(method, base, adapter):
    query = split_query("blue denim jacket")
    t = Target(base, adapter)
    e = explain(query, t, method=method, budget=16)
    assert e.label == e.top_labels[0][0] and e.version == adapter.version and len(e.words) == 3
    assert [w.word for w in e.words] == ["blue", "denim", "jacket"]
    asked = explain(query, t, method=method, label="grocery", budget=16)
    assert asked.label == "grocery" and asked.probability == pytest.approx(
        dict(asked.top_labels).get("grocery", asked.probability)
    )


def test_unknown_label_dimension_and_method_are_explain_errors(base, adapter):
    with pytest.raises(ExplainError, match="not one of"):
        Target(base, adapter, label="toys")
    with pytest.raises(ExplainError, match="intent_type"):
        Target(base, adapter, dimension="intent_type")
    with pytest.raises(ExplainError, match="unknown explanation method"):
        attribute("gradcam", split_query("a b"), Target(base, adapter, label="home"), budget=8)


def test_a_fused_version_says_how_much_each_member_moved_the_decision(store, base, tiny_encoder_dir):
    version = synthetic_fused_adapter(store, tiny_encoder_dir, seed=3, labels=LABELS, max_length=16)
    path, manifest = store.fetch(version)
    fused = base.build(version, path, manifest)
    e = explain(split_query("red running shoe"), Target(base, fused), method="occlusion", budget=8)
    assert e.members is not None and {m.kind for m in e.members} == {"adapter", "lexical", "memory"}
    assert all(np.isfinite(m.moved) and 0 <= m.probability <= 1 for m in e.members)
    assert any(abs(m.moved) > 1e-6 for m in e.members)
    ig = explain(split_query("red running shoe"), Target(base, fused), method="ig", budget=8)
    assert ig.members is None  # ig explains the encoder member alone


def test_eraser_bins_give_at_least_one_word_and_scores_follow_the_ranking(target):
    assert [top_k(8, s) for s in (0.01, 0.05, 0.1, 0.2, 0.5)] == [1, 1, 1, 2, 4]
    without, only = masks(np.array([2, 0, 1]), bins=(0.5,))
    assert without == [[False, True, False]] and only == [[True, False, True]]  # top 2 of 3: words 2, 0
    query = split_query(QUERY)
    values = attribute("occlusion", query, target, budget=0)
    best, worst = score_rankings(query, target, [ranking_of(values), ranking_of(-values)])
    assert best.comprehensiveness > worst.comprehensiveness
    assert len(random_rankings(5, 3, seed=1)) == 3


# ------------------------------------------------------------------ a planted spurious cue
_GENERIC = ["best", "cheap", "new", "large", "small", "deal"]
_OWN = {"electronics": ["cable", "charger"], "fashion": ["dress", "boots"], "grocery": ["milk", "bread"]}


def _cue_rows() -> list[Example]:
    """Home queries are told apart by one brand alone ("acme"): the cue the view must surface."""
    rows = []
    for i in range(144):
        generic = _GENERIC[i % len(_GENERIC)]
        if i % 4 == 3:
            rows.append(Example(f"acme {generic}", "home"))
        else:
            label = list(_OWN)[i % 4]
            rows.append(Example(f"{_OWN[label][(i // 4) % 2]} {generic}", label))
    return rows


def test_the_per_label_view_finds_a_brand_that_only_ever_came_with_one_label(
    base, tiny_encoder_dir, tmp_path
):
    settings = TrainSettings(min_steps=0, epochs=15, batch_size=16, learning_rate=2e-2, seed=5)
    result = fit(_cue_rows(), [], LABELS, tiny_encoder_dir, settings, 16, progress=False)
    save_adapter(
        result.model, tmp_path / "cue", base_dir=tiny_encoder_dir, labels=LABELS, metrics={}, max_length=16
    )
    store = ArtifactStore(tmp_path / "store")
    version = store.publish(tmp_path / "cue")
    path, manifest = store.fetch(version)
    t = Target(base, base.build(version, path, manifest))
    sample = [(f"acme {g}", 3) for g in _GENERIC[:5]] + [
        (f"{w} {g}", 2) for w in ("milk", "dress", "cable") for g in _GENERIC[:3]
    ]
    view = summarise(
        explain_sample(sample, t, method="occlusion", budget=8),
        version=version,
        dimension="category",
        method="occlusion",
    )
    home = [w for w in view.words if w.label == "home"]
    assert home, "the model never predicted the brand's label: it did not learn the cue"
    assert home[0].word == "acme" and home[0].share == 1.0 and home[0].queries == 5
    assert home[0].total > 0 and all(w.total < home[0].total for w in home[1:])
    assert view.examples[0].searches == 3 and len(view.examples) == len(sample)


@pytest.mark.parametrize("raw", ["red shoe", "- -", "Red, shoe!", "🙂 shoe 🙂", "a\x00b c", "ß ß ß ß"])
def test_shap_on_odd_queries_still_adds_up(target, raw):
    query = split_query(raw)
    values = attribute("shap", query, target, budget=16)
    full, empty = target.probabilities([query.text, ""])
    assert values.sum() == pytest.approx(full - empty, abs=1e-6)
