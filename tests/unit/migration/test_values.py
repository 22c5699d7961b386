"""Cell values as old sites export them: dates, attachment cells, titles."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from services.migration.values import BadValue, absolute_links, clean_line, clean_title, parse_attachments, parse_moment

SHANGHAI = ZoneInfo("Asia/Shanghai")
MARCH_5 = datetime(2021, 3, 5, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("2021-3-5", MARCH_5),
        ("2021-03-05", MARCH_5),
        ("2021年3月5日", MARCH_5),
        (" 2021 年 3 月 5 日 ", MARCH_5),
        ("2021/03/05", MARCH_5),
        ("2021/3/5", MARCH_5),
        ("2021.03.05", MARCH_5),
        ("20210305", MARCH_5),
        ("2021-03-05 10:30", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021-03-05 10:30:15", datetime(2021, 3, 5, 10, 30, 15, tzinfo=SHANGHAI)),
        ("2021-03-05 10:30:00.0", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021/3/5 9:05:07", datetime(2021, 3, 5, 9, 5, 7, tzinfo=SHANGHAI)),
        ("2021.03.05 14:00", datetime(2021, 3, 5, 14, 0, tzinfo=SHANGHAI)),
        ("2021年3月5日 10时30分", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021年3月5日10时30分", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021-03-05T10:30:00", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021-03-05T02:30:00Z", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("2021-03-05 10:30:00 +0800", datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)),
        ("44260", MARCH_5),  # an Excel serial that lost its date format
        ("44260.5", datetime(2021, 3, 5, 12, 0, tzinfo=SHANGHAI)),
        (44260, MARCH_5),
        (44260.75, datetime(2021, 3, 5, 18, 0, tzinfo=SHANGHAI)),
        (20210305, MARCH_5),
        (datetime(2021, 3, 5, 10, 0), datetime(2021, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        (datetime(2021, 3, 5, 2, 0, tzinfo=timezone.utc), datetime(2021, 3, 5, 10, 0, tzinfo=SHANGHAI)),
        (date(2021, 3, 5), MARCH_5),
        (None, None),
        ("", None),
        ("\u3000 ", None),
    ],
)
def test_dates_old_sites_write(cell, expected):
    moment = parse_moment(cell)
    assert moment == expected
    if moment is not None:
        assert moment.tzinfo is not None and moment.utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("2021-13-45", "month must be in 1..12"),
        ("2021-02-30", "day is out of range"),
        ("2021年9月31日", "day is out of range"),
        ("昨天", "is not a date"),
        ("2021-03", "is not a date"),
        ("1899-01-01", "year 1899 is out of range"),
        ("3/5/2021", "is not a date"),  # month-first is ambiguous; never guessed
        (True, "is not a date"),
        (123456789, "is not a date"),
    ],
)
def test_dates_that_are_rejected(cell, message):
    with pytest.raises(BadValue, match=message):
        parse_moment(cell)


BASE = "http://www.csx.gov.cn/"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("通知.pdf|http://x.gov.cn/a.pdf", [("通知.pdf", "http://x.gov.cn/a.pdf")]),
        ("通知.pdf|http://x.gov.cn/a.pdf; 表格.xls|/up/b.xls", [("通知.pdf", "http://x.gov.cn/a.pdf"), ("表格.xls", BASE + "up/b.xls")]),
        ("通知|http://x.gov.cn/a.pdf；表格|http://x.gov.cn/b.xls", [("通知", "http://x.gov.cn/a.pdf"), ("表格", "http://x.gov.cn/b.xls")]),
        ("http://x.gov.cn/a.pdf|通知", [("通知", "http://x.gov.cn/a.pdf")]),
        ("http://x.gov.cn/a.pdf", [("a.pdf", "http://x.gov.cn/a.pdf")]),
        (
            "http://x.gov.cn/%E9%80%9A%E7%9F%A5.pdf http://x.gov.cn/b.doc",
            [("通知.pdf", "http://x.gov.cn/%E9%80%9A%E7%9F%A5.pdf"), ("b.doc", "http://x.gov.cn/b.doc")],
        ),
        ("http://x.gov.cn/a.pdf\nhttp://x.gov.cn/b.pdf", [("a.pdf", "http://x.gov.cn/a.pdf"), ("b.pdf", "http://x.gov.cn/b.pdf")]),
        ("申请表：http://x.gov.cn/a.doc", [("申请表", "http://x.gov.cn/a.doc")]),
        (
            '<a href="/up/a.pdf">附件一&amp;二</a>、<A HREF=http://q.cn/b.doc target=_blank> 附件 二 </A>',
            [("附件一&二", BASE + "up/a.pdf"), ("附件 二", "http://q.cn/b.doc")],
        ),
        ('<a href="/up/empty.pdf"></a>', [("empty.pdf", BASE + "up/empty.pdf")]),
        ([{"name": "表", "url": "http://x.gov.cn/t.xlsx"}, {"title": "图", "href": "/i.png"}], [("表", "http://x.gov.cn/t.xlsx"), ("图", BASE + "i.png")]),
        (["http://x.gov.cn/a.pdf"], [("a.pdf", "http://x.gov.cn/a.pdf")]),
        ("", []),
        (None, []),
        ([], []),
    ],
)
def test_attachment_cells(cell, expected):
    assert [(a["name"], a["url"]) for a in parse_attachments(cell, BASE)] == expected


@pytest.mark.parametrize(
    ("cell", "base", "message"),
    [
        ("见附件", BASE, "no link in '见附件'"),
        ("/uploads/a.pdf", None, "relative link '/uploads/a.pdf': set base_url"),
        ("<a>附件</a>", BASE, "attachment '附件' has no link"),
        ("<p>附件见下</p><a name=top>", BASE, "has no link"),
        ([{"name": "表"}], BASE, "no url"),
    ],
)
def test_attachment_cells_that_are_rejected(cell, base, message):
    with pytest.raises(BadValue, match=message):
        parse_attachments(cell, base)


def test_titles_are_plain_trimmed_text():
    assert clean_title('  <font color="#FF0000">长沙县&nbsp;低保\u3000通知</font>\n') == "长沙县 低保 通知"
    assert clean_title("关于《条例》第<2>条的解读") == "关于《条例》第<2>条的解读"
    assert clean_title(None) == ""
    assert clean_line(" 长沙县\u3000民政局 ") == "长沙县 民政局"
    assert clean_line(12345.0) == "12345", "ids typed as numbers lose Excel's .0"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<a href="/files/a.pdf">通知</a>', '<a href="http://www.csx.gov.cn/files/a.pdf">通知</a>'),
        ("<img src='../up/1.jpg' alt=x>", '<img src="http://www.csx.gov.cn/up/1.jpg" alt=x>'),
        ("<a HREF=b.doc>表</a>", '<a HREF="http://www.csx.gov.cn/zwgk/b.doc">表</a>'),
        ('<a href="/f?a=1&amp;b=2">x</a>', '<a href="http://www.csx.gov.cn/f?a=1&amp;b=2">x</a>'),
        ('<a href="//cdn.csx.gov.cn/x.pdf">x</a>', '<a href="http://cdn.csx.gov.cn/x.pdf">x</a>'),
    ],
)
def test_relative_links_in_a_body_point_at_the_old_site(body, expected):
    assert absolute_links(body, "http://www.csx.gov.cn/zwgk/index.html") == expected


@pytest.mark.parametrize(
    "body",
    [
        '<a href="https://www.gov.cn/a.html">国务院</a>',
        '<a href="#top">回到顶部</a>',
        '<a href="mailto:x@csx.gov.cn">信箱</a>',
        "<p>href=/x 是正文</p>",
        '<a href="">空</a>',
    ],
)
def test_absolute_links_fragments_and_text_are_left_alone(body):
    assert absolute_links(body, "http://www.csx.gov.cn/") == body


def test_without_a_base_url_the_body_is_unchanged():
    assert absolute_links('<a href="/files/a.pdf">通知</a>', None) == '<a href="/files/a.pdf">通知</a>'
