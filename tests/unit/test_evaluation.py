"""Evaluation metrics (ECE, slices, reports) and the gate's pure decision, on hand-built cases."""

import numpy as np
import pytest

from store.labels import LabelledQuery
from trainer import metrics
from trainer.evaluation import classification_report, evaluate, frequency_slices
from trainer.gate import held_out_rows
from trainer.gate_rules import decide
from trainer.metrics import expected_calibration_error
from trainer.settings import GateSettings
from trainer.split import is_validation

# ------------------------------------------------------------------ ECE


def test_ece_of_one_overconfident_bin():
    # 4 predictions at 0.9 confidence, 3 right: |0.75 - 0.9| = 0.15.
    assert expected_calibration_error([0.9] * 4, [True, True, True, False]) == pytest.approx(0.15)


def test_ece_weights_bins_by_their_share():
    # Bin (0.933, 1]: conf 0.95, accuracy 1 -> gap 0.05; bin (0.533, 0.6]: conf 0.55, accuracy 0.5 -> 0.05.
    # Each bin holds half the rows: 0.5 * 0.05 + 0.5 * 0.05.
    conf = [0.95, 0.95, 0.55, 0.55]
    assert expected_calibration_error(conf, [True, True, True, False]) == pytest.approx(0.05)
    # Gaps of opposite sign in *different* bins do not cancel; in the *same* bin they do.
    assert expected_calibration_error([0.7, 0.9], [True, False]) == pytest.approx(0.5 * 0.3 + 0.5 * 0.9)
    assert expected_calibration_error([0.8, 0.8], [True, False]) == pytest.approx(0.3)


def test_ece_puts_zero_confidence_in_the_first_bin():
    # (0.0, right) and (0.05, wrong) share bin (0, 1/15]: accuracy 0.5, confidence 0.025.
    assert expected_calibration_error([0.0, 0.05], [True, False]) == pytest.approx(0.475)
    # 0.1 is in the second bin: two bins, gaps 1.0 and 0.1.
    assert expected_calibration_error([0.0, 0.1], [True, False]) == pytest.approx(0.55)
    assert expected_calibration_error([0.5], [True], n_bins=1) == pytest.approx(0.5)


def test_ece_perfect_and_empty_and_invalid():
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert expected_calibration_error([], []) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.2], [True])
    with pytest.raises(ValueError, match="confidences"):
        expected_calibration_error([0.5, 0.5], [True])


# ------------------------------------------------------------------ slices


def test_slices_cover_about_half_then_thirty_percent_of_traffic():
    counts = {"a": 10, "b": 5, "c": 3, "d": 1, "e": 1}  # 20 searches
    s = frequency_slices(counts)
    # Searched >= 10 times: 50% of the traffic (head); >= 5: 75%, closer to 80% than >= 3 (90%).
    assert (s.head_min, s.torso_min, s.total_searches) == (10, 5, 20)
    assert [s.slice_of(counts[q]) for q in "abcde"] == ["head", "torso", "tail", "tail", "tail"]
    assert s.slice_of(0) == "tail"  # never searched


def test_slices_keep_equally_frequent_queries_together_and_every_slice_populated():
    # Mostly singletons: "closest to 50%" alone would put count 1 in the head.
    counts = {f"q{i}": 1 for i in range(60)} | {f"r{i}": 2 for i in range(15)} | {"top": 30}
    s = frequency_slices(counts)
    assert s.slice_of(30) == "head" and s.slice_of(2) == "torso" and s.slice_of(1) == "tail"
    assert frequency_slices({}).slice_of(5) == "tail"
    with pytest.raises(ValueError):
        frequency_slices(counts, head_share=0.6, torso_share=0.5)


# ------------------------------------------------------------------ reports


def test_report_macro_f1_averages_over_gold_labels_only():
    y_true, y_pred = ["a", "a", "b"], ["a", "c", "b"]
    rep = classification_report(y_true, y_pred, [0.9, 0.6, 0.8])
    assert rep["accuracy"] == pytest.approx(2 / 3)
    # a: p 1, r 0.5, f1 2/3; b: 1; c (never gold) is reported but not averaged.
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-6)
    assert rep["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rep["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert "slices" not in rep


class _Fixed:
    """A predictor with a fixed answer per query."""

    def __init__(self, answers: dict[str, tuple[str, float]], labels: list[str]) -> None:
        self._answers, self._labels = answers, labels

    @property
    def labels(self) -> list[str]:
        return self._labels

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self._labels)))
        for i, t in enumerate(texts):
            label, p = self._answers[t]
            j = self._labels.index(label)
            out[i, :] = (1 - p) / (len(self._labels) - 1)
            out[i, j] = p
        return out


def test_evaluate_slices_rows_by_search_counts():
    counts = {"h1": 10, "h2": 10, "t1": 3, "t2": 3, "x1": 1}  # 27 searches
    gold = [("h1", "a"), ("h2", "b"), ("t1", "a"), ("t2", "b"), ("x1", "a"), ("new", "c")]
    model = _Fixed(
        {
            "h1": ("a", 0.9),
            "h2": ("b", 0.9),
            "t1": ("a", 0.8),
            "t2": ("a", 0.8),
            "x1": ("b", 0.7),
            "new": ("a", 0.6),
        },
        ["a", "b"],
    )
    rep = evaluate(model, gold, counts)
    head, torso, tail, unseen = (rep["slices"][n] for n in ("head", "torso", "tail", "unseen"))
    assert (head["n"], torso["n"], tail["n"], unseen["n"]) == (2, 2, 1, 1)
    assert head["accuracy"] == 1.0 and head["searches"] == 20
    assert torso["accuracy"] == 0.5 and torso["searches"] == 6
    assert tail["accuracy"] == 0.0 and tail["searches"] == 1
    assert unseen["accuracy"] == 0.0 and unseen["searches"] == 0  # "new" was never searched
    assert rep["labels_unknown_to_model"] == ["c"]
    assert rep["slice_definition"]["head_min_searches"] == 10
    assert rep["n"] == 6 and rep["accuracy"] == pytest.approx(3 / 6)


def test_evaluate_reports_kind_slices_that_overlap_and_never_replace_frequency_slices():
    counts = {"h1": 10, "t1": 1, "x1": 1}
    gold = [("h1", "a"), ("t1", "b"), ("x1", "a")]
    model = _Fixed({"h1": ("a", 0.9), "t1": ("a", 0.8), "x1": ("a", 0.7)}, ["a", "b"])
    kinds = {"t1": {"typo", "question"}, "x1": {"question", "other_language"}}
    rep = evaluate(model, gold, counts, kinds=kinds)
    s = rep["slices"]
    assert (s["typo"]["n"], s["question"]["n"], s["other_language"]["n"]) == (1, 2, 1)
    assert s["typo"]["accuracy"] == 0.0 and s["question"]["accuracy"] == 0.5
    assert s["other_language"]["accuracy"] == 1.0
    assert s["unseen_phrasing"] == {"n": 0}  # always reported, empty here
    assert s["head"]["n"] + s["torso"]["n"] + s["tail"]["n"] == 3  # the partition is unchanged
    assert "typo" not in evaluate(model, gold, counts)["slices"]  # no kinds given: none reported


def test_the_report_scores_with_the_one_metric_definition():
    """The gate's and ``eval``'s numbers are trainer.metrics' numbers on the same rows (overall and per
    slice), also when the model predicts a label the rows never use ("c" here): training's
    ``val_macro_f1`` comes from the same function, so the two cannot disagree on the same rows."""
    counts = {"h1": 10, "h2": 10, "t1": 3, "t2": 3, "x1": 1, "x2": 1}
    gold = [("h1", "a"), ("h2", "b"), ("t1", "a"), ("t2", "b"), ("x1", "a"), ("x2", "b")]
    answers = {"h1": "a", "h2": "c", "t1": "a", "t2": "b", "x1": "c", "x2": "a"}
    model = _Fixed({q: (label, 0.8) for q, label in answers.items()}, ["a", "b", "c"])
    rep = evaluate(model, gold, counts)
    bounds = frequency_slices(counts)
    parts = {None: gold} | {
        name: [(q, label) for q, label in gold if bounds.slice_of(counts[q]) == name]
        for name in ("head", "torso", "tail")
    }
    for name, rows in parts.items():
        truth, guesses = [label for _, label in rows], [answers[q] for q, _ in rows]
        scores = rep if name is None else rep["slices"][name]
        assert scores["n"] == len(rows) > 0
        assert scores["macro_f1"] == round(metrics.macro_f1(truth, guesses), 6), name
        assert scores["accuracy"] == round(metrics.accuracy(truth, guesses), 6), name
    # Averaged over the gold labels a and b only: a: p 2/3 r 2/3; b: p 1 r 1/3 -> (2/3 + 1/2) / 2.
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2, abs=1e-6)
    assert rep["per_class"]["c"]["precision"] == 0.0


def test_evaluate_refuses_empty_gold():
    with pytest.raises(ValueError, match="no gold rows"):
        evaluate(_Fixed({}, ["a", "b"]), [], {})


# ------------------------------------------------------------------ the gate's decision


def _report(macro_f1: float, accuracy: float, slices: dict[str, tuple[int, float, float]]) -> dict:
    return {
        "n": sum(n for n, _, _ in slices.values()),
        "macro_f1": macro_f1,
        "accuracy": accuracy,
        "slices": {k: {"n": n, "macro_f1": f, "accuracy": a} for k, (n, f, a) in slices.items()},
    }


GOOD = _report(0.9, 0.9, {"head": (40, 0.95, 0.95), "torso": (40, 0.9, 0.9), "tail": (40, 0.85, 0.85)})


def test_gate_refuses_a_tail_regression_hidden_by_a_better_average():
    cand = _report(0.92, 0.93, {"head": (40, 0.99, 0.99), "torso": (40, 0.95, 0.95), "tail": (40, 0.8, 0.85)})
    d = decide(cand, GOOD, GateSettings(tolerance=0.01), champion_version="v1")
    assert not d.blessed
    assert d.reasons == [
        "tail macro_f1 regressed: 0.8000 vs champion 0.8500 (drop 0.0500 > tolerance 0.0100)"
    ]


def test_gate_tolerance_and_ties():
    cand = _report(0.895, 0.9, {"head": (40, 0.95, 0.95), "torso": (40, 0.9, 0.9), "tail": (40, 0.85, 0.85)})
    assert decide(cand, GOOD, GateSettings(tolerance=0.01)).blessed  # 0.005 drop is within tolerance
    assert not decide(cand, GOOD, GateSettings(tolerance=0.0)).blessed
    assert decide(GOOD, GOOD, GateSettings(tolerance=0.0)).blessed  # equal is not a regression


def test_gate_floors_apply_on_enough_gold_rows_only():
    bad = _report(0.3, 0.4, {"head": (40, 0.3, 0.4), "torso": (40, 0.3, 0.4), "tail": (40, 0.3, 0.4)})
    settings = GateSettings(min_macro_f1=0.5, min_accuracy=0.5, min_gold_for_floors=30)
    d = decide(GOOD, None, settings, gold=bad)  # 120 gold rows scored 0.3 / 0.4
    assert not d.blessed
    assert d.reasons == ["gold macro_f1 0.3000 < floor 0.5000", "gold accuracy 0.4000 < floor 0.5000"]
    few = _report(0.3, 0.4, {}) | {"n": 12}
    ok = decide(GOOD, None, settings, gold=few)  # 12 gold rows: floors do not apply, and say why
    assert ok.blessed
    assert "12 held-out gold rows < min_gold_for_floors 30" in ok.reasons[0]
    assert ok.reasons[-1] == "no champion yet: no regression to check"
    # weak labels only: a candidate far under the floors is judged against its baselines instead
    assert decide(bad, None, settings).blessed


def test_gate_requires_beating_the_baselines_on_the_same_rows():
    tfidf = _report(0.93, 0.94, {})
    prior = _report(0.05, 0.3, {})
    d = decide(GOOD, None, GateSettings(), baselines={"tfidf": tfidf, "label_prior": prior})
    assert not d.blessed
    assert d.reasons == [
        "macro_f1 0.9000 does not beat the tfidf baseline 0.9300 on the same rows (margin +0.0000)",
        "accuracy 0.9000 does not beat the tfidf baseline 0.9400 on the same rows (margin +0.0000)",
    ]
    weaker = {"tfidf": _report(0.8, 0.85, {}), "label_prior": prior}
    better = decide(GOOD, None, GateSettings(), baselines=weaker)
    assert better.blessed
    assert "macro_f1 0.9000 beats tfidf 0.8000" in better.reasons
    margin = decide(GOOD, None, GateSettings(baseline_margin=0.12), baselines={"tfidf": weaker["tfidf"]})
    assert not margin.blessed and len(margin.reasons) == 2
    tolerant = decide(GOOD, None, GateSettings(baseline_margin=-0.05), baselines={"tfidf": tfidf})
    assert tolerant.blessed
    assert "macro_f1 0.9000 trails tfidf 0.9300 within the margin (-0.0500)" in tolerant.reasons


def test_gate_skips_small_slices_and_refuses_an_unloadable_champion():
    cand = _report(0.9, 0.9, {"head": (3, 0.0, 0.0), "torso": (40, 0.9, 0.9), "tail": (40, 0.85, 0.85)})
    d = decide(cand, GOOD, GateSettings(min_slice_examples=20))
    assert d.blessed
    skipped = [c for c in d.checks if c.skipped and c.kind == "no_regression"]
    assert {(c.slice, c.metric) for c in skipped} == {("head", "macro_f1"), ("head", "accuracy")}
    assert all("3 held-out rows" in c.describe() for c in skipped)
    d = decide(GOOD, None, GateSettings(), champion_version="v0", champion_error="hidden_size 32 vs 384")
    assert not d.blessed and "champion v0 could not be evaluated (hidden_size 32 vs 384)" in d.reasons[0]
    as_dict = d.as_dict()
    assert as_dict["checks"][-1]["value"] is None  # NaN never reaches JSON(B)


def test_gate_metrics_setting_is_validated():
    with pytest.raises(ValueError, match="subset"):
        GateSettings(metrics=["ece"])


def test_held_out_rows_prefer_gold_and_never_use_training_bucket_gold():
    texts = [f"query {i}" for i in range(400)]
    val = [t for t in texts if is_validation(t, 0.2)]
    train = [t for t in texts if not is_validation(t, 0.2)]
    val_rows = [LabelledQuery(t, "weak", 1.0, 3.0, 3) for t in val[:10]]
    gold = {val[0]: "gold", val[20]: "gold", train[0]: "gold"}
    rows, composition = held_out_rows(val_rows, gold, 0.2)
    as_map = dict(rows)
    assert as_map[val[0]] == "gold" and as_map[val[1]] == "weak" and as_map[val[20]] == "gold"
    assert train[0] not in as_map
    assert composition == {"rows": 11, "gold": 2, "weak": 9}
    # eval gold is never trained on: held out wherever its query falls
    rows, composition = held_out_rows(val_rows, gold, 0.2, eval_gold={train[0]})
    assert dict(rows)[train[0]] == "gold" and composition == {"rows": 12, "gold": 3, "weak": 9}


def test_paired_comparison_counts_discordant_rows_and_tests_them():
    from trainer.evaluation import paired_comparison

    truth = ["a"] * 40
    a = ["a"] * 30 + ["b"] * 10  # 10 errors
    b = ["b"] * 12 + ["a"] * 28  # 12 errors, all where a is right
    out = paired_comparison(truth, a, b)
    assert (out["a_errors"], out["b_errors"], out["a_only_right"], out["b_only_right"]) == (10, 12, 12, 10)
    assert 0.8 < out["p_value"] <= 1.0  # 12 vs 10 discordant: no evidence either way
    lopsided = paired_comparison(truth, ["a"] * 40, ["b"] * 15 + ["a"] * 25)
    assert lopsided["a_only_right"] == 15 and lopsided["b_only_right"] == 0
    assert lopsided["p_value"] == pytest.approx(2 * 0.5**15, rel=1e-3)
    assert paired_comparison(truth, truth, truth)["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_comparison(truth, a[:-1], b)
