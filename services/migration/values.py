"""Cell values as old sites export them → clean values: text, dates, attachment links.

Each parser takes whatever the reader produced (str, int, float, datetime, list from JSON) and
either returns the clean value or raises `BadValue` with a message for the reject file.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from posixpath import basename
from urllib.parse import unquote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import nh3

SHANGHAI = ZoneInfo("Asia/Shanghai")
EARLIEST_YEAR, LATEST_YEAR = 1949, 2100
_EXCEL_EPOCH = datetime(1899, 12, 30)  # serial 60 is Lotus's 1900-02-29; nothing we read is that old


class BadValue(ValueError):
    pass


def text_of(value: object) -> str:
    """A cell as text: numbers without a spurious '.0', datetimes in ISO form, None as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def clean_line(value: object) -> str:
    """Single-line text: trimmed, inner whitespace runs (incl. 全角空格, &nbsp;) made one space."""
    return " ".join(text_of(value).split())


def clean_title(value: object) -> str:
    """Titles are plain text; some old CMSs stored them with <font> colour tags and entities."""
    text = text_of(value)
    if "<" in text or "&" in text:
        text = html.unescape(nh3.clean(text, tags=set()))
    return " ".join(text.split())


# 2021-3-5 · 2021/03/05 · 2021.03.05 · 2021年3月5日 · each optionally followed by a time
# (10:30, 10:30:15, 10时30分, with fractional seconds) and an offset.
_DATE = re.compile(
    r"(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})(?:\s*日)?"
    r"(?:(?:\s+|T|(?<=日))(?P<H>\d{1,2})\s*[:：时]\s*(?P<M>\d{1,2})\s*分?(?:\s*[:：]?\s*(?P<S>\d{1,2})(?:\.\d+)?\s*秒?)?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
_COMPACT = re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:\s*T?(?P<H>\d{2}):?(?P<M>\d{2})(?::?(?P<S>\d{2}))?)?")
_SERIAL = re.compile(r"\d{4,5}(?:\.\d+)?")


def _aware(moment: datetime) -> datetime:
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise BadValue(f"year {moment.year} is out of range")
    return moment.replace(tzinfo=SHANGHAI) if moment.tzinfo is None else moment.astimezone(SHANGHAI)


def _from_serial(serial: float) -> datetime:
    # Excel serials: days since 1899-12-30, the fraction is the time of day.
    return _EXCEL_EPOCH + timedelta(days=serial)


def _from_match(match: re.Match[str]) -> datetime:
    parts = match.groupdict()
    try:
        moment = datetime(int(parts["y"]), int(parts["m"]), int(parts["d"]), int(parts["H"] or 0), int(parts["M"] or 0), int(parts["S"] or 0))
    except ValueError as exc:
        raise BadValue(f"{match.group(0)!r}: {exc}") from None
    offset = parts.get("tz")
    if offset:
        moment = datetime.fromisoformat(moment.isoformat() + ("+00:00" if offset == "Z" else offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"))
    return moment


def parse_moment(value: object) -> datetime | None:
    """A publication moment in Asia/Shanghai, or None when the cell is blank. Naive values are
    read as Beijing time; a date without a time is midnight."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return _aware(datetime.combine(value, time()))
    if isinstance(value, bool):
        raise BadValue(f"{value!r} is not a date")
    if isinstance(value, (int, float)):
        if 19000101 <= value <= 21001231 and float(value).is_integer():
            return parse_moment(str(int(value)))  # 20210305 typed as a number
        if 1 <= value < 100_000:
            return _aware(_from_serial(float(value)))
        raise BadValue(f"{value!r} is not a date")
    return _parse_text(value if isinstance(value, str) else str(value))


@lru_cache(maxsize=65_536)  # exports repeat the same dates thousands of times
def _parse_text(raw: str) -> datetime | None:
    text = " ".join(raw.split())
    if not text:
        return None
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        try:
            return _aware(datetime.fromisoformat(text))  # 2021-03-05[ 10:30[:00]], in C
        except ValueError:
            pass
    for pattern in (_DATE, _COMPACT):
        match = pattern.fullmatch(text)
        if match:
            return _aware(_from_match(match))
    if _SERIAL.fullmatch(text):
        return _aware(_from_serial(float(text)))
    raise BadValue(f"{text!r} is not a date")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[list[str]] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href") or ""
            self._open = [href.strip(), ""]
            self.links.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[1] += data


_URL = re.compile(r"(?:https?://|/)[^\s,，;；|<>\"'（）()]+", re.IGNORECASE)
_SPLIT = re.compile(r"[;；\r\n]+")
_LINKISH = re.compile(r"^(?:https?://|/)", re.IGNORECASE)


def _name_from(url: str, number: int) -> str:
    name = unquote(basename(urlsplit(url).path)).strip()
    return name or f"附件{number}"


def _absolute(url: str, base_url: str | None) -> str:
    if urlsplit(url).scheme:
        return url
    if not base_url:
        raise BadValue(f"relative link {url!r}: set base_url in the config to the old site's address")
    return urljoin(base_url, url)


# An href or src attribute and its value, quoted either way or not at all.
_LINK_ATTRIBUTE = re.compile(r"""(\s(?:href|src)\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def absolute_links(body_html: str, base_url: str | None) -> str:
    """The body with its relative links and images (href, src) made absolute against the old
    site's address: on the new column a relative link would point into the new site, where the
    old site's files are not. Fragments (#…) and links with a scheme are left as they are; the
    gate's sanitiser still decides which schemes survive. Without base_url, nothing changes."""
    if not base_url:
        return body_html

    def absolute(match: re.Match) -> str:
        value = next(group for group in match.groups()[1:] if group is not None)
        target = html.unescape(value).strip()
        if not target or target.startswith("#") or urlsplit(target).scheme:
            return match.group(0)
        return f'{match.group(1)}"{html.escape(urljoin(base_url, target), quote=True)}"'

    return _LINK_ATTRIBUTE.sub(absolute, body_html)


def _pairs_from_text(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for part in _SPLIT.split(text):
        part = part.strip()
        if not part:
            continue
        if "|" in part:
            left, right = (s.strip() for s in part.rsplit("|", 1))
            # name|url as a rule, but some exports write url|name
            name, url = (right, left) if _LINKISH.match(left) and not _LINKISH.match(right) else (left, right)
            pairs.append((name, url))
            continue
        urls = _URL.findall(part)
        if not urls:
            raise BadValue(f"no link in {part!r}")
        rest = " ".join(_URL.sub(" ", part).split()).strip(" :：-—,，")
        pairs += [(rest if len(urls) == 1 else "", url) for url in urls]
    return pairs


def parse_attachments(value: object, base_url: str | None = None) -> list[dict[str, str]]:
    """Attachment links from a cell: "name|url; name|url", bare URLs, <a href> tags, or (from
    JSON) a list of such strings or of {"name"/"title", "url"/"href"} objects. Relative links
    are resolved against base_url; a name defaults to the file name in the link."""
    if value is None or value == "" or value == []:
        return []
    pairs: list[tuple[str, str]] = []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict):
            url = text_of(item.get("url") or item.get("href") or item.get("link")).strip()
            if not url:
                raise BadValue(f"no url in {item!r}")
            pairs.append((clean_line(item.get("name") or item.get("title")), url))
            continue
        text = text_of(item).strip()
        if not text:
            continue
        if "<a" in text.lower():
            parser = _Links()
            parser.feed(text)
            parser.close()
            if not parser.links:
                raise BadValue(f"no link in {text[:80]!r}")
            pairs += [(" ".join(name.split()), href) for href, name in parser.links]
        else:
            pairs += _pairs_from_text(text)
    attachments = []
    for number, (name, url) in enumerate(pairs, start=1):
        if not url:
            raise BadValue(f"attachment {name or number!r} has no link")
        absolute = _absolute(url, base_url)
        attachments.append({"name": clean_line(name) or _name_from(absolute, number), "url": absolute})
    return attachments
