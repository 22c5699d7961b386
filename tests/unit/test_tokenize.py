import sqlite3

import pytest

from services.indexer.tokenize import (
    char_terms,
    index_terms,
    matches,
    plain_text,
    query_expression,
    query_phrases,
    snippet,
)


def test_cjk_runs_become_overlapping_bigrams():
    assert index_terms("最低生活保障") == "最低 低生 生活 活保 保障"


def test_a_lone_cjk_character_stays_a_unigram():
    assert index_terms("在，低保") == "在 低保"


def test_ascii_words_are_lowercased_and_split_from_cjk():
    assert index_terms("2022年度ABC预算") == "2022 年度 abc 预算"


def test_punctuation_emoji_and_markup_characters_are_dropped():
    assert index_terms("“低保”！😀 <b>—") == "低保 b"


def test_full_width_forms_are_folded():
    assert index_terms("ＰＭ２．５") == "pm2 5"


def test_char_terms_are_every_cjk_character():
    assert char_terms("低保 2022年") == "低 保 年"


def test_unicode61_keeps_our_terms_whole():
    # The index relies on FTS5's unicode61 splitting only at our spaces.
    terms = index_terms("最低生活保障 2022年度 𠀀𠀁")
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
    db.execute("INSERT INTO t (x) VALUES (?)", (terms,))
    assert sorted(row[0] for row in db.execute("SELECT term FROM v")) == sorted(terms.split())


def test_query_word_becomes_a_phrase_of_its_bigrams():
    assert query_expression("最低生活保障") == '"最低 低生 生活 活保 保障"'
    assert query_expression("低保") == '"低保"'
    assert query_expression("低") == '"低"'


def test_every_word_of_the_query_is_required():
    assert query_expression("2022年 预算") == '"2022" AND "年" AND "预算"'
    assert query_phrases("低保 低保") == [("低保",)]


@pytest.mark.parametrize("q", ["", "   ", '"', "？！", "😀", "\x00"])
def test_nothing_searchable_gives_none(q):
    assert query_expression(q) is None


@pytest.mark.parametrize("q", ['"', "AND OR NOT", "'; DROP TABLE x; --", "title:*", "😀", "a" * 500, "NEAR(低保 救助)", "{title body}: x", "-x ^y", "低保*"])
def test_hostile_input_is_always_valid_fts5(q):
    expression = query_expression(q)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(title, body, tokenize='unicode61')")
    db.execute("INSERT INTO t VALUES ('低保 救助', 'and or not drop table x title')")
    if expression is not None:
        assert '"' not in expression.replace('" AND "', "").strip('"')
        db.execute("SELECT rowid FROM t WHERE t MATCH ?", (expression,)).fetchall()


def test_matches_mirrors_fts5_phrases():
    assert matches(query_phrases("低保"), "最低生活保障（低保）")
    assert matches(query_phrases("保"), "低保")
    assert not matches(query_phrases("生活保障"), "生活 保障")
    assert matches(query_phrases("标题 正文"), "标题", "正文")


def test_plain_text_strips_tags_and_decodes_entities():
    assert plain_text("<p>第一段&amp;</p><p>第二<b>段</b></p><script>x()</script>") == "第一段& 第二段"


def test_snippet_marks_matches_and_escapes_everything_else():
    assert snippet(["<i>低保</i> & 救助"], "低保") == "&lt;i&gt;<mark>低保</mark>&lt;/i&gt; &amp; 救助"


def test_snippet_is_a_window_around_the_first_match():
    text = "甲" * 200 + "低保" + "乙" * 200
    result = snippet([text], "低保", width=40)
    assert result.startswith("…") and result.endswith("…")
    assert "<mark>低保</mark>" in result


def test_snippet_falls_back_to_a_later_text_then_to_the_start():
    assert snippet(["正文", "摘要里有低保"], "低保") == "摘要里有<mark>低保</mark>"
    assert snippet(["正文", "摘要"], "救助") == "正文"
    assert snippet([], "x") == ""


def test_snippet_matches_case_insensitively():
    assert snippet(["Office PDF"], "pdf") == "Office <mark>PDF</mark>"
