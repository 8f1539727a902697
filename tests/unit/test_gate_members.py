"""The gate's member rule (trainer/gate_rules.py rule 5) and how trainer/gate.py scores and records
a fused candidate's members."""

import json

import numpy as np
import pytest

from trainer.evaluation import evaluate
from trainer.gate import decision_details, score_members, unleaked
from trainer.gate_rules import decide, member_checks
from trainer.settings import FusionSettings, GateSettings, TrainSettings

RULE = FusionSettings(member_margin=0.005, min_slice_rows=100)


def _report(macro_f1: float, slices: dict[str, tuple[int, float]]) -> dict:
    return {
        "n": sum(n for n, _ in slices.values()),
        "macro_f1": macro_f1,
        "accuracy": macro_f1,
        "slices": {k: {"n": n, "macro_f1": f, "accuracy": f} for k, (n, f) in slices.items()},
    }


FUSED = _report(0.93, {"head": (300, 0.97), "torso": (200, 0.92), "tail": (150, 0.88), "typo": (120, 0.80)})
LEXICAL = _report(0.90, {"head": (300, 0.96), "torso": (200, 0.90), "tail": (150, 0.86), "typo": (120, 0.70)})
LORA = _report(0.91, {"head": (300, 0.95), "torso": (200, 0.91), "tail": (150, 0.89), "typo": (120, 0.80)})


def _decide(fused, members, **kw):
    return decide(fused, None, GateSettings(), members=members, fusion=RULE, **kw)


def test_a_fused_candidate_below_its_best_member_on_a_slice_is_rejected_naming_both():
    members = {"tfidf": LEXICAL, "lora": _report(0.91, {**_slices(LORA), "tail": (150, 0.90)})}
    d = _decide(FUSED, members)
    assert not d.blessed
    assert d.reasons == [
        "tail macro_f1 fused 0.8800 is below member lora 0.9000 by 0.0200 > member margin 0.0050"
    ]


def test_within_the_margin_of_the_best_member_everywhere_passes():
    # tail: lora 0.89 vs fused 0.88 is a point; with a 1.5-point margin it passes, and says so
    wider = FusionSettings(member_margin=0.015, min_slice_rows=100)
    d = decide(FUSED, None, GateSettings(), members={"tfidf": LEXICAL, "lora": LORA}, fusion=wider)
    assert d.blessed, d.reasons
    member = [c for c in d.checks if c.kind == "member"]
    assert {c.slice for c in member} == {"overall", "head", "torso", "tail", "typo"}
    tail = next(c for c in member if c.slice == "tail")
    assert (tail.detail, tail.reference, tail.value) == ("lora", 0.89, 0.88)
    assert "within the member margin" in tail.describe()


def test_one_point_below_the_best_member_exceeds_the_default_half_point_margin():
    d = _decide(FUSED, {"tfidf": LEXICAL, "lora": LORA})
    assert not d.blessed
    assert d.reasons == [
        "tail macro_f1 fused 0.8800 is below member lora 0.8900 by 0.0100 > member margin 0.0050"
    ]


def test_small_slices_are_reported_not_judged():
    small = _report(0.93, {"head": (300, 0.97), "tail": (99, 0.50)})
    member = _report(0.92, {"head": (300, 0.96), "tail": (99, 0.95)})
    d = _decide(small, {"tfidf": member})
    assert d.blessed, d.reasons
    (tail,) = [c for c in d.checks if c.slice == "tail"]
    assert tail.skipped and tail.passed
    assert "99 held-out rows < fusion.min_slice_rows 100" in tail.describe()


def test_empty_slices_and_plain_candidates_get_no_member_checks():
    with_empty = _report(0.93, {"head": (300, 0.97)})
    with_empty["slices"]["unseen"] = {"n": 0}  # evaluate's empty slice: no numbers to compare
    checks = member_checks(with_empty, {"tfidf": LEXICAL}, RULE)
    assert [c.slice for c in checks] == ["overall", "head"]
    plain = decide(FUSED, None, GateSettings(), fusion=RULE)
    assert not [c for c in plain.checks if c.kind == "member"]
    assert plain == decide(FUSED, None, GateSettings())


def _slices(report):
    return {k: (v["n"], v["macro_f1"]) for k, v in report["slices"].items()}


class _Fixed:
    """A predictor answering one fixed label per query."""

    def __init__(self, answers: dict[str, str], labels: list[str]) -> None:
        self._answers, self._labels = answers, labels

    @property
    def labels(self) -> list[str]:
        return self._labels

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), len(self._labels)), 0.1)
        for i, text in enumerate(texts):
            out[i, self._labels.index(self._answers[text])] = 0.8
        return out


class _Fused(_Fixed):
    """A fused version as the loader hands it to the gate: its own answer and its members'."""

    def __init__(self, answers, labels, members) -> None:
        super().__init__(answers, labels)
        self._members = members
        self.forgotten: list[str] | None = None

    def member_predictors(self):
        return self._members

    def without_memory_of(self, queries):
        self.forgotten = list(queries)
        return self


class _HalfFused(_Fixed):
    def member_predictors(self):
        return {}


ROWS = [("red shoe", "fashion"), ("usb cable", "electronics"), ("hose", "garden"), ("dress", "fashion")]
COUNTS = {"red shoe": 9, "usb cable": 5, "hose": 1, "dress": 1}
LABELS = ["electronics", "fashion", "garden"]


def _score(predictor):
    return evaluate(predictor, ROWS, COUNTS)


def test_a_plain_candidate_has_no_members_to_score():
    assert score_members(_Fixed(dict(ROWS), LABELS), _score) == {}


def test_the_decision_json_carries_every_members_report_and_the_rule():
    right = dict(ROWS)
    wrong = {**right, "hose": "fashion"}
    fused = _Fused(right, LABELS, {"tfidf": _Fixed(wrong, LABELS), "memory": _Fixed(right, LABELS)})
    members = score_members(fused, _score)
    assert sorted(members) == ["memory", "tfidf"]
    assert members["tfidf"]["accuracy"] == pytest.approx(0.75) and members["memory"]["accuracy"] == 1.0
    reports = {"candidate": _score(fused)}
    train = TrainSettings(fusion=FusionSettings(min_slice_rows=1))
    decision = decide(reports["candidate"], None, train.gate, members=members, fusion=train.fusion)
    details = json.loads(json.dumps(decision_details(decision, {"rows": 4}, train, reports, {}, members)))
    assert details["members"]["tfidf"]["macro_f1"] == members["tfidf"]["macro_f1"]
    assert details["member_rule"] == {"member_margin": 0.005, "min_slice_rows": 1}
    judged = [c for c in details["decision"]["checks"] if c["kind"] == "member" and not c["skipped"]]
    assert {c["slice"] for c in judged} >= {"overall", "head", "tail"}
    assert all(c["detail"] == "memory" for c in judged)  # the best member, named
    plain = decision_details(decision, {"rows": 4}, train, reports, {})
    assert "members" not in plain and "member_rule" not in plain


def test_fused_models_forget_the_memory_of_weak_held_out_rows_only():
    fused = _Fused(dict(ROWS), LABELS, {})
    assert unleaked(fused, ROWS, gold={"hose", "elsewhere"}) is fused
    assert fused.forgotten == ["dress", "red shoe", "usb cable"]  # weak rows; gold "hose" keeps it
    plain = _Fixed(dict(ROWS), LABELS)
    assert unleaked(plain, ROWS, gold=set()) is plain
    with pytest.raises(TypeError, match="without_memory_of"):
        unleaked(_HalfFused(dict(ROWS), LABELS), ROWS, gold=set())
