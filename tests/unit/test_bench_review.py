"""`bench review` on a tiny simulation (TF-IDF, two budgets) and its simulated reviewer."""

import json

from click.testing import CliRunner

from intentloop.bench.review import ReviewBenchOptions, reviewer_answer, run_review_bench
from intentloop.cli.bench import bench
from intentloop.settings import Settings

LABELS = ["a", "b", "c", "d"]


def test_the_simulated_reviewer_answers_a_query_the_same_way_every_time():
    queries = [f"query {i}" for i in range(400)]
    first = [reviewer_answer(17, q, "a", LABELS, 0.3) for q in queries]
    assert first == [reviewer_answer(17, q, "a", LABELS, 0.3) for q in queries]
    wrong = sum(1 for answer in first if answer != "a")
    assert 80 <= wrong <= 160  # about 30% of 400, each wrong answer another label
    assert set(first) <= set(LABELS)
    assert [reviewer_answer(18, q, "a", LABELS, 0.3) for q in queries] != first  # the seed matters
    assert all(reviewer_answer(17, q, "b", LABELS, 0.0) == "b" for q in queries)
    assert reviewer_answer(17, "only one label", "a", ["a"], 0.99) == "a"


def test_bench_review_prints_both_learning_curves_and_the_target_as_json(monkeypatch, tmp_path):
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    args = ["review", "--queries", "1000", "--seeds", "5", "--budgets", "30", "--quiet"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["bench"] == "review" and out["learner"] == "tfidf" and out["seeds"] == [5]
    assert out["budgets"] == [0, 30] and out["reviewer_error"] == 0.05 and out["target_budget"] == 30
    for strategy in ("active", "random"):
        curve = out["curves"][strategy]
        assert [p["budget"] for p in curve] == [0, 30]
        assert all(0 <= p["macro_f1"] <= 1 for p in curve)
        assert set(out["gain_at_target"][strategy]) == {"all", "tail"}
        assert out["selected_at_target"][strategy]["abstained_share"] is not None
    # budget 0 is the same weak-label model for both strategies
    assert out["curves"]["active"][0] == out["curves"]["random"][0]
    seed = out["per_seed"]["5"]
    assert seed["pool"] > 30 and set(seed["gains"]) == {"active", "random"}
    assert [p["budget"] for p in seed["curves"]["active"]] == [0, 30]
    assert out["target_met"] in (True, False) and out["total_wall_s"] >= 0


def test_the_lora_learner_trains_the_product_recipe_per_budget(tiny_encoder_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    s = Settings()
    model = s.model.model_copy(update={"base_dir": tiny_encoder_dir, "max_length": 16})
    opts = ReviewBenchOptions(
        queries=1000, seeds=(5,), budgets=(0, 20), learner="lora", epochs=1, progress=False
    )
    out = run_review_bench(s.model_copy(update={"model": model}), opts, echo=lambda _: None)
    assert out["learner"] == "lora" and out["epochs"] == 1 and out["fits_per_seed"] == 3
    assert [p["budget"] for p in out["curves"]["random"]] == [0, 20]
    assert out["per_seed"]["5"]["fit_s_mean"] > 0
