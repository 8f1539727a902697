"""Words as the shopper typed them: English, Chinese, mixed scripts, and the removal operation."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.explain import words as words_module
from serving.explain.words import keep, split_query
from store.taxonomy import normalise_query


def _texts(raw: str) -> list[str]:
    return [w.text for w in split_query(raw).words]


def test_english_words_keep_their_raw_spans_and_normalised_spans():
    q = split_query("  Red  GARDEN-Hose 20m ")
    assert _texts(q.raw) == ["Red", "GARDEN-Hose", "20m"]
    assert q.text == "red garden-hose 20m" == normalise_query(q.raw)
    for w in q.words:
        assert q.raw[w.start : w.end] == w.text
        assert q.text[w.norm_start : w.norm_end] == w.text.casefold()


def test_chinese_is_segmented_into_words_not_characters():
    q = split_query("红色连衣裙 长款")
    assert _texts(q.raw) == ["红色", "连衣裙", "长款"]
    assert q.text == "红色连衣裙 长款"
    assert [(w.start, w.end) for w in q.words] == [(0, 2), (2, 5), (6, 8)]


def test_mixed_latin_and_chinese_in_one_chunk():
    assert _texts("iPhone手机壳 怎么退货") == ["iPhone", "手机", "壳", "怎么", "退货"]


def test_without_jieba_each_cjk_character_is_a_word_and_latin_runs_stay_whole(monkeypatch):
    monkeypatch.setattr(words_module, "_jieba", lambda: None)
    assert _texts("iPhone手机壳") == ["iPhone", "手", "机", "壳"]


def test_casefold_that_changes_length_keeps_spans_exact():
    q = split_query("Straße Maß")
    assert q.text == "strasse mass"
    assert [q.text[w.norm_start : w.norm_end] for w in q.words] == ["strasse", "mass"]


def test_removing_words_is_a_space_then_normalisation():
    q = split_query("red garden hose")
    assert keep(q, [True, False, True]) == "red hose"
    assert keep(q, [False, False, False]) == ""
    zh = split_query("红色连衣裙长款")
    assert keep(zh, [False, True, True]) == "连衣裙长款"
    assert keep(zh, [True, False, True]) == "红色 长款"
    with pytest.raises(ValueError, match="mask of 2 for 3 words"):
        keep(q, [True, True])


@given(st.text(alphabet=st.sampled_from(list("ab ßİ\t红色裙子xY-\u3000")), max_size=30))
def test_the_model_text_is_always_normalise_query_of_the_raw_query(raw):
    q = split_query(raw)
    assert q.text == normalise_query(raw)
    assert keep(q, [True] * len(q.words)) == q.text
    for w in q.words:
        assert q.raw[w.start : w.end] == w.text and w.text.strip() == w.text
        assert q.text[w.norm_start : w.norm_end] == w.text.casefold()
