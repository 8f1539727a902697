"""`bench explain` end to end on the tiny encoder: every method measured against random rankings."""

import pytest

from intentloop.bench.explain import ExplainBenchOptions, run_explain_bench
from intentloop.settings import Settings


@pytest.fixture
def settings(tiny_encoder_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path))
    s = Settings()
    return s.model_copy(
        update={
            "model": s.model.model_copy(update={"base_dir": tiny_encoder_dir, "max_length": 16}),
            "train": s.train.model_copy(update={"min_steps": 0, "batch_size": 32}),
        }
    )


def test_every_method_is_scored_against_random_rankings(settings):
    opts = ExplainBenchOptions(queries=600, epochs=1, held_out=6, random=2, budget=16, progress=False)
    out = run_explain_bench(settings, opts, echo=lambda _: None)
    assert out["benchmark"] == "explain" and out["queries"] == 6 and out["source"] == "simulator held-out"
    assert -1 <= out["random_comprehensiveness"] <= 1  # removing words may raise the probability
    for method in ("shap", "ig", "lime", "occlusion"):
        r = out[method]
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        assert -1 <= r["comprehensiveness"] <= 1 and -1 <= r["sufficiency"] <= 1
        assert isinstance(r["meets_targets"], bool)
    assert out["best_method"] in (None, "shap", "ig", "lime", "occlusion")


def test_a_published_version_needs_held_out_queries(settings):
    with pytest.raises(ValueError, match="--queries-file"):
        run_explain_bench(settings, ExplainBenchOptions(version="abc", progress=False), echo=lambda _: None)
