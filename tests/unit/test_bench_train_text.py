"""`bench text` (intentloop.bench.train_text): reading a user's CSV, the few-shot split, the slices."""

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from intentloop.bench.train_text import (
    Slice,
    TextCsvError,
    parse_slice,
    parts_of,
    read_rows,
    scores,
    split_rows,
)
from intentloop.cli import cli
from trainer.split import is_validation

TYPO = Slice("typo", "tags", "Z")
WORDS = {"refund": "money back", "cancel": "stop my order", "track": "where is my parcel"}


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    """3 labels x 12 utterances; every third one tagged Z (typos), with a BOM as spreadsheets write."""
    path = tmp_path / "utterances.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f)
        writer.writerow(["instruction", "intent", "tags"])
        for label, phrase in WORDS.items():
            for i in range(12):
                writer.writerow([f"  Please {phrase}  NUMBER {i} ", label, "BLZ" if i % 3 == 0 else "BL"])
        writer.writerow(["   ", "refund", "BL"])  # empty text: dropped
    return path


def test_rows_are_normalised_and_tagged_by_slice(csv_file):
    rows = read_rows(csv_file, "instruction", "intent", (TYPO,))
    assert len(rows) == 36
    assert rows[0].text == "please money back number 0" and rows[0].label == "refund"
    assert sum(1 for r in rows if r.slices == {"typo"}) == 12
    assert all(("typo" in r.slices) == (int(r.text.split()[-1]) % 3 == 0) for r in rows)


@pytest.mark.parametrize(
    ("text_column", "label_column", "slices"),
    [
        ("text", "intent", ()),
        ("instruction", "label", ()),
        ("instruction", "intent", (Slice("q", "flags", "Q"),)),
    ],
)
def test_a_missing_column_is_named(csv_file, text_column, label_column, slices):
    with pytest.raises(TextCsvError, match="has no column") as err:
        read_rows(csv_file, text_column, label_column, slices)
    assert "instruction, intent, tags" in str(err.value)  # the columns it does have


def test_one_label_is_refused(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("instruction,intent\nhello,greet\nhi there,greet\n")
    with pytest.raises(TextCsvError, match="at least 2 distinct labels"):
        read_rows(path, "instruction", "intent", ())


@pytest.mark.parametrize("spec", ["tags=Z", "tags:typo", "=Z:typo", "tags=Z:", "tags=Z:all"])
def test_bad_slice_specs_are_refused(spec):
    with pytest.raises(TextCsvError):
        parse_slice(spec)


def test_slice_spec_keeps_colons_in_the_value():
    assert parse_slice("tags=Z:typo") == TYPO
    assert parse_slice("when=10:30:late") == Slice("late", "when", "10:30")


def test_split_holds_out_by_hash_caps_per_label_and_never_trains_on_a_slice(csv_file):
    rows = read_rows(csv_file, "instruction", "intent", (TYPO,))
    split = split_rows(rows, test_fraction=0.3, per_label=5, seed=3)
    test_texts = {r.text for r in split.test}
    assert test_texts == {r.text for r in rows if is_validation(r.text, 0.3)}
    assert [r for r in split.test if r.slices]  # sliced rows are still scored
    trained = {e.text for e in split.train}
    assert not trained & test_texts
    assert not trained & {r.text for r in rows if r.slices}
    rest = [r for r in rows if r.text not in test_texts]
    assert split.pool == sum(1 for r in rest if not r.slices)
    assert split.excluded == sum(1 for r in rest if r.slices)
    for label in WORDS:
        available = sum(1 for r in rest if r.label == label and not r.slices)
        assert sum(1 for e in split.train if e.label == label) == min(5, available)
    assert split.labels == sorted(WORDS)


def test_split_is_deterministic_for_a_seed(csv_file):
    rows = read_rows(csv_file, "instruction", "intent", (TYPO,))
    first = split_rows(rows, 0.3, 3, seed=3)
    assert first == split_rows(rows, 0.3, 3, seed=3)
    others = [split_rows(rows, 0.3, 3, seed=s).train for s in range(4, 10)]
    assert any(train != first.train for train in others)


def test_tfidf_is_scored_per_part(csv_file):
    from trainer.baselines import train_tfidf
    from trainer.evaluation import predict

    rows = read_rows(csv_file, "instruction", "intent", (TYPO,))
    split = split_rows(rows, 0.3, 8, seed=3)
    parts = parts_of(split.test, (TYPO,))
    assert len(parts["all"]) == len(parts["typo"]) + len(parts["clean"])
    model = train_tfidf(split.train, split.labels, seed=3)
    predicted, _ = predict(model, [r.text for r in split.test])
    scored = scores([r.label for r in split.test], predicted, parts)
    assert set(scored) == {"all", "typo", "clean"}
    assert scored["all"]["accuracy"] == 1.0  # each label has its own words


def test_command_end_to_end_on_a_tiny_encoder(csv_file, tiny_encoder_dir, monkeypatch):
    monkeypatch.setenv("INTENTLOOP_MODEL__BASE_DIR", str(tiny_encoder_dir))
    monkeypatch.setenv("INTENTLOOP_MODEL__MAX_LENGTH", "16")
    monkeypatch.setenv("INTENTLOOP_TRAIN__MIN_STEPS", "0")  # a tiny CSV: its own few steps
    args = ["bench", "text", "--csv", str(csv_file), "--slice", "tags=Z:typo", "--train-per-label", "4"]
    result = CliRunner().invoke(cli, [*args, "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["csv"] == "utterances.csv" and summary["train_rows"] == 12 and summary["epochs"] == 1
    assert set(summary["scores"]) == {"tfidf", "lora", "lora_no_aug"}
    assert set(summary["scores"]["lora"]) == {"all", "typo", "clean"}
    assert set(summary["lora_vs_tfidf"]["typo"]) == {"n", "lora_errors", "tfidf_errors", "mcnemar_p"}
    assert summary["lora_vs_lora_no_aug"]["all"]["n"] == summary["test_rows"]["all"]


def test_command_names_a_missing_column(csv_file):
    result = CliRunner().invoke(cli, ["bench", "text", "--csv", str(csv_file), "--label-column", "label"])
    assert result.exit_code == 2 and "has no column label" in result.output
