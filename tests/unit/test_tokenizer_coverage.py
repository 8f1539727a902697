"""The tokenizer coverage check: an encoder that cannot read the snapshot is reported loudly."""

import logging

import pytest

from trainer.classifier import load_tokenizer
from trainer.coverage import check_tokenizer_coverage, tokenizer_coverage

CHINESE = ["无线充电器", "婴儿奶粉", "蓝牙耳机", "iphone 手机壳"]
ENGLISH = ["red running shoe", "usb c cable 2m", "organic oat milk"]


@pytest.fixture(scope="module")
def minilm_tokenizer(tiny_encoder_dir):
    """The English all-MiniLM-L6-v2 WordPiece tokenizer (the tiny encoder ships its files)."""
    return load_tokenizer(tiny_encoder_dir)


def test_english_queries_are_covered(minilm_tokenizer):
    report = tokenizer_coverage(minilm_tokenizer, ENGLISH)
    assert report["unk_token"] == "[UNK]"
    assert report["unk_tokens"] == report["unk_token_share"] == 0
    assert report["queries_any_unknown"] == report["queries_all_unknown"] == 0
    assert report["tokens"] > len(ENGLISH) and report["examples"] == []


def test_chinese_with_an_english_vocabulary_is_mostly_unknown(minilm_tokenizer):
    report = tokenizer_coverage(minilm_tokenizer, [*CHINESE, *ENGLISH])
    # Counted on the queries' own tokens (no [CLS]/[SEP]): 无线充电器 and 婴儿奶粉 are all [UNK];
    # 蓝牙耳机 keeps 耳 and "iphone 手机壳" keeps iphone and 手.
    assert report["queries"] == 7
    assert report["queries_all_unknown"] == 2
    assert report["queries_any_unknown"] == 4
    assert report["unk_token_share"] > 0.4
    assert report["examples"][:2] == ["无线充电器", "婴儿奶粉"]  # the entirely unknown ones first


def test_poor_coverage_warns_loudly_and_is_reported(tiny_encoder_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.coverage"):
        report = check_tokenizer_coverage(tiny_encoder_dir, CHINESE)
    assert report["warned"] is True
    assert "INTENTLOOP_MODEL__BASE_DIR" in caplog.text and "entirely unknown" in caplog.text
    caplog.clear()
    assert check_tokenizer_coverage(tiny_encoder_dir, ENGLISH)["warned"] is False
    assert caplog.text == ""


def test_a_tokenizer_without_an_unknown_token_covers_everything():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(ENGLISH, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet))
    byte_level = PreTrainedTokenizerFast(tokenizer_object=bpe)
    assert byte_level.unk_token_id is None
    report = tokenizer_coverage(byte_level, CHINESE)
    assert report["unk_token_share"] == 0.0 and report["queries_all_unknown"] == 0
    assert "byte-level" in report["note"]


def test_an_empty_snapshot_has_nothing_to_report(minilm_tokenizer):
    report = tokenizer_coverage(minilm_tokenizer, [])
    assert report["queries"] == report["tokens"] == 0 and report["unk_token_share"] == 0.0
