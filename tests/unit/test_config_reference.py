"""docs/configuration.md is generated from the settings tree and must match it."""

import os
from pathlib import Path

from pydantic import BaseModel, Field

from intentloop import config_reference as ref
from intentloop.settings import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_reference_matches_the_settings():
    assert COMMITTED.read_text(encoding="utf-8") == ref.render(), (
        f"docs/configuration.md is stale: run `{ref.COMMAND}` and commit the result"
    )


def test_render_does_not_depend_on_the_machine(tmp_path, monkeypatch):
    expected = ref.render()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("INTENTLOOP_TRAIN__EPOCHS", "99")  # the environment is never read
    assert ref.render() == expected


def test_every_leaf_field_has_one_row():
    rows = [row.env for section in ref.sections() for row in section.rows]
    assert len(rows) == len(set(rows))
    assert "INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1" in rows
    assert "INTENTLOOP_TRAIN__GATE" not in rows  # a section is not a variable


def test_the_documented_names_are_the_ones_settings_read(monkeypatch):
    monkeypatch.chdir(Path(os.sep))  # no .env file in the way
    monkeypatch.setenv("INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1", "0.7")
    monkeypatch.setenv("INTENTLOOP_SERVE__MARKETS", '["de", "fr"]')
    monkeypatch.setenv("INTENTLOOP_LABELS__HALF_LIFE_DAYS", "null")
    settings = Settings()
    assert settings.train.gate.min_macro_f1 == 0.7
    assert settings.serve.markets == ["de", "fr"]
    assert settings.labels.half_life_days is None


class _Machine(BaseModel):
    """A section with a machine-dependent default."""

    workers: int = Field(default=os.cpu_count() or 1, ge=1, json_schema_extra={"doc_default": "core count"})
    cache: Path = Field(default_factory=lambda: Path.home() / "cache", description="where <things> go")


def test_machine_dependent_defaults_render_stably():
    (section,) = ref.sections(_Machine, "X_", "machine")
    workers, cache = section.rows
    assert (workers.type, workers.default, workers.description) == (
        "int, ≥ 1",
        "core count",
        ref.NO_DESCRIPTION,
    )
    assert (cache.type, cache.default) == ("path", "`~/cache`")
    assert cache.description == "where &lt;things> go"
    assert ref.undocumented(_Machine) == ["INTENTLOOP_WORKERS"]
