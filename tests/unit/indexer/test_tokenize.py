import unicodedata

import pytest

from services.indexer.tokenize import (
    MAX_PARTS,
    char_terms,
    highlight,
    index_terms,
    is_single_char,
    matches,
    normalise,
    plain_text,
    query_parts,
    query_phrases,
    snippet,
)


def test_cjk_runs_become_overlapping_bigrams():
    assert index_terms("最低生活保障") == "最低 低生 生活 活保 保障"


def test_bigrams_never_cross_punctuation_or_letters():
    assert index_terms("低保，养老 a 救助") == "低保 养老 救助 a"


def test_a_lone_cjk_character_is_a_term_of_its_own_after_the_rest():
    assert index_terms("在，低保 2026") == "低保 2026 在"


def test_ascii_words_are_lowercased_and_follow_the_bigrams_in_order():
    assert index_terms("2022 年度 ABC 预算") == "年度 预算 2022 abc"
    assert index_terms("索引号：430102001/2026-00001") == "索引 引号 430102001 2026 00001"


def test_quotation_and_title_marks_do_not_end_a_word():
    assert index_terms("“三公”经费") == "三公 公经 经费"
    assert matches(query_phrases("三公经费"), "“三公”经费预算") and matches(query_phrases("“三公”经费"), "三公经费")
    assert highlight("“三公”经费预算", "三公经费") == "“<mark>三公”经费</mark>预算"


def test_punctuation_emoji_and_markup_characters_are_dropped():
    assert index_terms("“低保”！😀 <b>—") == "低保 b"


def test_a_single_character_matches_alone_or_inside_a_word():
    assert matches(query_phrases("保"), "最低生活保障") and matches(query_phrases("在"), "在，低保")
    assert not matches(query_phrases("税"), "低保")


def test_full_width_forms_and_compatibility_ideographs_are_folded():
    assert index_terms("ＰＭ２．５") == "pm2 5"
    assert index_terms("\u2f00\u4e8c") == "一二"  # ⼀ (Kangxi radical) is 一
    assert char_terms("①号") == "号" and index_terms("①号") == "1 号 1号"


def test_folding_is_nfkc_wherever_it_matters():
    # The fast path skips NFKC only where NFKC would change nothing but punctuation.
    samples = ["ＡＢＣ１２３", "（低保）：“名单”", "㈠㊀", "ﬁle", "〸", "①②", "Ⅻ", "低保 2022年"]
    for sample in samples:
        folded = unicodedata.normalize("NFKC", sample)
        assert (index_terms(sample), char_terms(sample)) == (index_terms(folded), char_terms(folded)), sample


def test_char_terms_are_every_cjk_character():
    assert char_terms("低保 2022年") == "低 保 年"


def test_query_parts_are_runs_and_codes_kept_as_written():
    assert query_parts("最低生活保障") == ["最低生活保障"]
    assert query_parts("2022年 预算") == ["2022年", "预算"]
    assert query_parts("430102001/2026-00001") == ["430102001/2026-00001"]
    assert query_parts("PM2.5 监测") == ["pm2.5", "监测"]
    assert query_parts("低保 低保 “低保”") == ["低保"]


def test_a_word_touching_a_cjk_character_is_one_term():
    assert query_phrases("2022年 预算") == [("2022年",), ("预算",)]
    assert query_phrases("第3批") == [("第3",), ("3批",)]
    assert query_phrases("2024年第三季度") == [("2024年",), ("年第", "第三", "三季", "季度")]
    assert index_terms("2024年3月，第3批") == "2024 3 3 年 月 第 批 2024年 3月 3批 年3 第3"
    assert matches(query_phrases("2022年 预算"), "2022年度部门预算") and not matches(query_phrases("2022年"), "2022 年")


@pytest.mark.parametrize("q", ["", "   ", '"', "？！", "😀", "\x00", "()", "*:*"])
def test_nothing_searchable_gives_no_parts(q):
    assert query_parts(q) == []


@pytest.mark.parametrize(
    "q", ['"', "AND OR NOT", "'; DROP TABLE x; --", "title:*", "😀", "a" * 500, "NEAR(低保 救助)", "{title body}: x", "-x ^y", "低保*", "\\"]
)
def test_operators_and_syntax_only_separate_parts(q):
    for part in query_parts(q):
        assert part.replace("-", "").replace("/", "").replace(".", "").replace("'", "").replace(";", "").isalnum() or all(
            "\u4e00" <= c <= "\u9fff" for c in part
        )


def test_a_long_query_is_bounded():
    assert len(query_parts(" ".join(f"词语{i}" for i in range(200)))) == MAX_PARTS // 2  # 词语 and its number: two parts each


def test_phrases_are_bigrams_single_characters_or_words():
    assert query_phrases("最低生活保障 低 430102001/2026-00001") == [("最低", "低生", "生活", "活保", "保障"), ("低",), ("430102001", "2026", "00001")]
    assert query_phrases("pm2.5标准") == [("pm2", "5"), ("5标",), ("标准",)]
    assert is_single_char(("低",)) and not is_single_char(("a",)) and not is_single_char(("低保",))


def test_matches_mirrors_the_index():
    assert matches(query_phrases("低保"), "最低生活保障（低保）")
    assert matches(query_phrases("保"), "低保")
    assert not matches(query_phrases("生活保障"), "生活 保障")
    assert matches(query_phrases("标题 正文"), "标题", "正文")
    assert matches(query_phrases("430102001/2026-00001"), "索引号：430102001/2026-00001")
    assert not matches(query_phrases("430102001/2026-00001"), "430102001/2026-00010")


def test_normalise_is_lower_case_nfkc():
    assert normalise("ＡＢＣ Def") == "abc def"


def test_plain_text_strips_tags_and_decodes_entities():
    assert plain_text("<p>第一段&amp;</p><p>第二<b>段</b></p><script>x()</script><!-- 注释 --><style>p{}</style>") == "第一段& 第二段"
    assert plain_text("a<br>b<BR/>c<span>d</span>") == "a b cd"


def test_highlight_marks_and_escapes_the_whole_text():
    assert highlight("<b>低保</b>名单", "低保") == "&lt;b&gt;<mark>低保</mark>&lt;/b&gt;名单"
    assert highlight("通知", "低保") == "通知"
    assert highlight("2022年度部门预算", "2022年 预算") == "<mark>2022年</mark>度部门<mark>预算</mark>"
    assert highlight("关于430102001/2026-00001号", "430102001/2026-00001") == "关于<mark>430102001/2026-00001</mark>号"


def test_highlight_keeps_full_width_text_as_written():
    assert highlight("ＰＭ２.５监测（低保）", "pm2.5 低保") == "<mark>ＰＭ２.５</mark>监测（<mark>低保</mark>）"


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
    assert snippet(["", "", "低保<名单>"], "低保") == "<mark>低保</mark>&lt;名单&gt;"


def test_snippet_matches_case_insensitively():
    assert snippet(["Office PDF"], "pdf") == "Office <mark>PDF</mark>"
