"""The promotion gate on real Postgres and Redis with a tiny encoder: a worse adapter is refused.

Sequence: a barely trained first adapter (floors lowered so there is a champion to beat), a properly
trained one (blessed: better everywhere), then a one-epoch, near-zero learning rate one through the
CLI (refused: it regresses overall and on every slice). The champion never moves on the refusal;
every decision is recorded; the refused adapter stays inspectable.
"""

import json
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from training_helpers import training_env

from intentloop.cli import EXIT_ERROR, main
from intentloop.jobs import train_and_maybe_promote
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from intentloop.stack import Endpoints
from store.evaluations import gate_decisions
from store.models import AdapterVersion, SearchQuery, WeakLabel
from store.registry import RedisRegistry
from store.versions import CHAMPION, recorded_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_PRODUCTS = {
    "fashion": ["red shoe", "blue dress", "leather boots", "denim jacket", "wool scarf"],
    "electronics": ["usb cable", "hdmi adapter", "phone charger", "wireless mouse", "laptop stand"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray", "pruning shears"],
}
# Three traffic tiers: 60 queries searched 10 times (54% of searches), 90 four times, 150 once.
_TIERS = [(60, 10), (90, 4), (150, 1)]


def _seed_store(db) -> list[tuple[str, str]]:
    rng = random.Random(5)
    labels = sorted(_PRODUCTS)
    queries: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(queries) < sum(n for n, _ in _TIERS):
        label = labels[len(queries) % 3]
        text = f"{rng.choice(_PRODUCTS[label])} {rng.randint(1, 999)}"
        if text not in seen:
            seen.add(text)
            queries.append((text, label))
    now = datetime(2025, 3, 1, tzinfo=UTC)
    weak, searches, i = [], [], 0
    for n, per_query in _TIERS:
        for text, label in queries[i : i + n]:
            weak.append({"norm_text": text, "label": label, "votes": 3.0, "events": 3, "last_ts": now})
            searches += [
                {
                    "query_id": f"{text}#{k}",
                    "session_id": "s",
                    "ts": now,
                    "text": text,
                    "norm_text": text,
                    "locale": "en-US",
                    "shown": [],
                }
                for k in range(per_query)
            ]
        i += n
    with db.session() as s:
        s.execute(insert(WeakLabel), weak)
        s.execute(insert(SearchQuery), searches)
    return queries


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    """INTENTLOOP_* for the test's servers, a fast training recipe and slices small enough to gate."""
    return training_env(
        monkeypatch,
        pg_url,
        redis_url,
        redis_prefix,
        tiny_encoder_dir,
        tmp_path,
        INTENTLOOP_TRAIN__EPOCHS="8",
        INTENTLOOP_TRAIN__PATIENCE="3",
        INTENTLOOP_TRAIN__GATE__MIN_SLICE_EXAMPLES="5",
        INTENTLOOP_TRAIN__GATE__TOLERANCE="0.02",
    )


def _runtime(env, gate=None, **train_overrides) -> Runtime:
    """A runtime on the test's servers; ``gate``/``train_overrides`` adjust this run's recipe."""
    settings = Settings()
    train = settings.train.model_copy(update=train_overrides)
    if gate:
        train = train.model_copy(update={"gate": train.gate.model_copy(update=gate)})
    settings = settings.model_copy(update={"train": train})
    endpoints = Endpoints(
        env["INTENTLOOP_KAFKA__BOOTSTRAP"], env["INTENTLOOP_POSTGRES__URL"], env["INTENTLOOP_REDIS__URL"]
    )
    return Runtime(settings, endpoints)


def test_gate_blesses_better_and_refuses_worse_adapters(db, env, tmp_path, capsys, monkeypatch):
    _seed_store(db)
    registry = RedisRegistry(env["INTENTLOOP_REDIS__URL"], prefix=env["INTENTLOOP_REDIS__KEY_PREFIX"])

    # 1. A barely trained first champion (floors lowered: with no champion only floors apply).
    weak_rt = _runtime(env, gate={"min_macro_f1": 0.0, "min_accuracy": 0.0}, epochs=1, learning_rate=1e-5)
    weak = train_and_maybe_promote(weak_rt, promote=True, progress=False)
    assert weak["gate"]["blessed"] and weak["promoted"], weak["gate"]["reasons"]
    assert weak["gate"]["reasons"][-1] == "no champion yet: no regression to check"
    assert set(weak["gate"]["scores"]) == {"candidate", "tfidf", "label_prior"}
    weak_rt.close()

    # 2. A properly trained candidate beats it overall and on every slice: blessed and promoted.
    good_rt = _runtime(env)
    good = train_and_maybe_promote(good_rt, promote=True, progress=False)
    good_rt.close()
    gate = good["gate"]
    assert gate["blessed"] and good["promoted"], gate["reasons"]
    assert gate["champion"] == weak["version"]
    scores = gate["scores"]
    assert scores["candidate"]["macro_f1"] > 0.8 > scores["champion"]["macro_f1"]
    assert all(scores["candidate"]["slices"][s]["n"] >= 5 for s in ("head", "torso", "tail"))
    assert scores["tfidf"]["macro_f1"] > 0.5  # the baseline is trained and scored on the same rows
    assert gate["eval_set"]["rows"] == scores["candidate"]["n"] > 0
    assert sum(1 for r in gate["reasons"] if "no regression" in r) == 8  # 2 metrics x (overall + 3 slices)
    assert registry.get_alias(CHAMPION) == good["version"]

    # 3. A one-epoch, near-zero learning-rate candidate through the CLI, floors at 0 so only the
    #    comparison with the champion can stop it: refused, with reasons naming metric and slice.
    #    From the base model: warm-started from the champion, a near-zero rate would just copy it.
    monkeypatch.setenv("INTENTLOOP_TRAIN__INIT", "base")
    monkeypatch.setenv("INTENTLOOP_TRAIN__EPOCHS", "1")
    monkeypatch.setenv("INTENTLOOP_TRAIN__LEARNING_RATE", "1e-6")
    monkeypatch.setenv("INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1", "0")
    monkeypatch.setenv("INTENTLOOP_TRAIN__GATE__MIN_ACCURACY", "0")
    capsys.readouterr()
    main(["train", "--promote", "--quiet"])
    out = capsys.readouterr()
    bad = json.loads(out.out)
    assert out.err.splitlines()[-1].startswith(f"gate: REJECTED {bad['version']} (not promoted): ")
    assert not bad["gate"]["blessed"] and not bad["promoted"]
    assert bad["gate"]["champion"] == good["version"]
    reasons = bad["gate"]["reasons"]
    assert any(r.startswith("overall macro_f1 regressed: ") for r in reasons), reasons
    assert any(r.startswith("tail macro_f1 regressed: ") for r in reasons), reasons
    assert any(r.startswith("head accuracy regressed: ") for r in reasons), reasons

    # The champion did not move, in Redis or in the Postgres audit trail ...
    assert registry.get_alias(CHAMPION) == good["version"]
    with db.session() as s:
        assert recorded_alias(s) == good["version"]
        # ... and the refused adapter stays inspectable: version row, artifact, recorded decision.
        assert s.get(AdapterVersion, bad["version"]) is not None
        decisions = gate_decisions(s)
        assert [(d.candidate, d.blessed) for d in reversed(decisions)] == [
            (weak["version"], True),
            (good["version"], True),
            (bad["version"], False),
        ]
        refused = decisions[0]
        assert refused.champion == good["version"] and refused.run_id == bad["run_id"]
        assert list(refused.reasons) == reasons
        assert refused.details["reports"]["champion"]["macro_f1"] == scores["candidate"]["macro_f1"]
        assert refused.details["decision"]["blessed"] is False
    assert (tmp_path / "artifacts" / bad["version"] / "manifest.json").is_file()

    # `registry list` shows each version's verdict.
    capsys.readouterr()
    main(["registry", "list"])
    listing = capsys.readouterr().out
    assert f"* {good['version']}" in listing and "gate=blessed" in listing
    assert any(bad["version"] in line and "gate=rejected" in line for line in listing.splitlines())
    registry.close()


def test_a_first_model_is_judged_against_its_baselines(db, env, monkeypatch):
    """No champion, no gold: the tiny encoder is judged against the baselines trained on the same
    rows. On these queries TF-IDF is perfect (the label is in the words), so the candidate loses,
    whatever its absolute score, and says so; against the label prior alone it wins and is blessed."""
    _seed_store(db)
    monkeypatch.setenv("INTENTLOOP_TRAIN__GATE__BASELINE_MARGIN", "0")
    rt = _runtime(env)
    result = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    gate = result["gate"]
    assert not gate["blessed"] and not result["promoted"]
    assert gate["scores"]["tfidf"]["macro_f1"] > gate["scores"]["candidate"]["macro_f1"]
    assert any(r.startswith("macro_f1 ") and "does not beat the tfidf baseline" in r for r in gate["reasons"])
    assert not any("label_prior" in r for r in gate["reasons"])  # the prior is beaten
    assert gate["scores"]["label_prior"]["macro_f1"] < 0.5

    # The same recipe judged against the label prior alone (TF-IDF off): it beats it, blessed.
    monkeypatch.setenv("INTENTLOOP_TRAIN__GATE__TFIDF_BASELINE", "false")
    rt = _runtime(env)
    again = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    assert again["gate"]["blessed"] and again["promoted"], again["gate"]["reasons"]
    assert any(r.startswith("macro_f1 ") and "beats label_prior" in r for r in again["gate"]["reasons"])


def test_eval_reports_the_champion_or_a_version_on_gold(db, env, tmp_path, capsys):
    queries = _seed_store(db)
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"query": q.upper(), "label": lab}) + "\n" for q, lab in queries[::5]))

    with pytest.raises(SystemExit) as exc:  # nothing promoted yet
        main(["eval", "--gold", str(gold)])
    assert exc.value.code == EXIT_ERROR
    assert capsys.readouterr().err.startswith("error: no champion yet")

    rt = _runtime(env)
    trained = train_and_maybe_promote(rt, promote=True, progress=False)
    rt.close()
    assert trained["promoted"], trained["gate"]["reasons"]
    capsys.readouterr()
    main(["eval", "--gold", str(gold)])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["version"] == trained["version"]
    assert report["n"] == len(queries[::5])
    assert report["macro_f1"] > 0.5 and 0 <= report["ece"] <= 1  # chance is 1/3
    assert set(report["per_class"]) >= set(_PRODUCTS)
    assert {k: report["slices"][k]["n"] > 0 for k in ("head", "torso", "tail")} == {
        "head": True,
        "torso": True,
        "tail": True,
    }
    assert report["slice_definition"]["head_min_searches"] == 10
    assert report["slice_definition"]["torso_min_searches"] == 4

    main(["eval", "--gold", str(gold), "--version", trained["version"]])
    assert json.loads(capsys.readouterr().out)["macro_f1"] == report["macro_f1"]

    with pytest.raises(SystemExit) as exc:
        main(["eval", "--gold", str(gold), "--version", "feedfacecafebeef"])
    assert exc.value.code == EXIT_ERROR
    assert "no adapter version 'feedfacecafebeef'" in capsys.readouterr().err
