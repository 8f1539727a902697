"""Shared by the training integration tests (gate, training runs)."""


def training_env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path, **recipe):
    """INTENTLOOP_* for the test's servers and the tiny encoder, plus ``recipe`` (name -> value)."""
    values = {
        "INTENTLOOP_POSTGRES__URL": pg_url,
        "INTENTLOOP_REDIS__URL": redis_url,
        "INTENTLOOP_REDIS__KEY_PREFIX": redis_prefix,
        "INTENTLOOP_KAFKA__BOOTSTRAP": "127.0.0.1:1",
        "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
        "INTENTLOOP_ARTIFACTS__DIR": str(tmp_path / "artifacts"),
        "INTENTLOOP_MODEL__BASE_DIR": str(tiny_encoder_dir),
        "INTENTLOOP_MODEL__MAX_LENGTH": "16",
        "INTENTLOOP_TRAIN__LEARNING_RATE": "5e-3",
        "INTENTLOOP_TRAIN__BATCH_SIZE": "16",
        # The tests' snapshots are tens of rows: each test sets the epochs its assertions need, and
        # the production floor of optimizer steps would multiply them (tests/unit/test_finetune.py).
        "INTENTLOOP_TRAIN__MIN_STEPS": "0",
        # A tiny random encoder cannot beat TF-IDF: tests of the loop's mechanics (promotion, windows,
        # resume) must not hinge on that; tests/integration/test_gate.py judges the baseline rule.
        "INTENTLOOP_TRAIN__GATE__BASELINE_MARGIN": "-1",
        **recipe,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def search_rows(searches: dict[str, int], ts) -> list[dict]:
    """``SearchQuery`` rows: each query searched as many times as ``searches`` says, all at ``ts``."""
    return [
        {
            "query_id": f"{q}#{k}",
            "session_id": "s",
            "ts": ts,
            "text": q,
            "norm_text": q,
            "locale": "en-US",
            "shown": [],
        }
        for q, n in searches.items()
        for k in range(n)
    ]
