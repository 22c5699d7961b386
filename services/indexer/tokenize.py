"""Chinese-aware terms for search, shared by every SearchIndex adapter (pure functions).

Chinese has no spaces, so CJK runs are indexed as overlapping bigrams (最低生活保障 →
最低 低生 生活 活保 保障): a query word of two or more characters is then a phrase of its
bigrams, with no dictionary to maintain. A single character cannot be found among bigrams,
so every CJK character is also indexed on its own, in separate columns (`char_terms`) —
mixing unigrams into the bigram stream would break phrase adjacency.

The terms are written space-separated for SQLite FTS5's `unicode61` tokenizer, which keeps
runs of letters/digits together: CJK ideographs and [0-9a-z] are all letter/number
characters to it, so it splits exactly at our spaces.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser

# Unified ideographs, extension A, compatibility ideographs, extensions B–G, and 〇.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_RUN = re.compile(f"([{_CJK}]+)|([0-9a-z]+)")

SNIPPET_CHARS = 120


def _runs(text: str) -> Iterator[tuple[bool, str]]:
    """(is_cjk, run) for each CJK run and ASCII word; everything else separates runs."""
    # NFKC folds full-width letters/digits (２０２２) and compatibility ideographs.
    normalised = (text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)).lower()
    for match in _RUN.finditer(normalised):
        yield match.group(1) is not None, match.group(0)


def _run_terms(is_cjk: bool, run: str) -> list[str]:
    if not is_cjk or len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """Bigrams of CJK runs (a lone CJK character stays a unigram) and lowercased ASCII words."""
    return both_terms(text)[0]


def char_terms(text: str) -> str:
    """Every CJK character on its own, so a one-character query can match."""
    return both_terms(text)[1]


# The same terms as _runs/_run_terms, found by the regex engine in text order: every
# overlapping CJK bigram (zero-width lookahead), a CJK character standing alone, or an
# ASCII word. Indexing is the consumer's hot path, so this stays out of Python loops.
_TERM = re.compile(f"(?=([{_CJK}]{{2}}))|(?<![{_CJK}])([{_CJK}])(?![{_CJK}])|([0-9a-z]+)")
_NOT_CJK = re.compile(f"[^{_CJK}]+")


def both_terms(text: str) -> tuple[str, str]:
    """(index_terms, char_terms), normalising once and only when the text needs it."""
    normalised = (text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)).lower()
    terms = " ".join(a or b or c for a, b, c in _TERM.findall(normalised))
    return terms, " ".join(_NOT_CJK.sub("", normalised))


def query_phrases(user_query: str) -> list[tuple[str, ...]]:
    """The phrases a document must all contain: one per CJK run or ASCII word of the query."""
    phrases: list[tuple[str, ...]] = []
    for is_cjk, run in _runs(user_query):
        phrase = tuple(_run_terms(is_cjk, run))
        if phrase not in phrases:
            phrases.append(phrase)
    return phrases


def query_expression(user_query: str) -> str | None:
    """A safe FTS5 MATCH expression, or None when the query has nothing searchable.

    Every phrase is double-quoted and built only from CJK characters and [0-9a-z], so no
    user input (quotes, AND/OR/NOT, column filters, `*`, SQL) can reach FTS5 as syntax.
    """
    phrases = query_phrases(user_query)
    if not phrases:
        return None
    return " AND ".join('"' + " ".join(phrase) + '"' for phrase in phrases)


def matches(phrases: list[tuple[str, ...]], *texts: str) -> bool:
    """FTS5 semantics in Python (for the in-memory index): every phrase occurs in some column."""
    columns = [terms.split() for text in texts for terms in (index_terms(text), char_terms(text))]
    return all(any(_contains(column, phrase) for column in columns) for phrase in phrases)


def _contains(terms: list[str], phrase: tuple[str, ...]) -> bool:
    size = len(phrase)
    return any(tuple(terms[i : i + size]) == phrase for i in range(len(terms) - size + 1))


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skipping += 1
        elif tag in ("p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def plain_text(body_html: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    extractor = _TextExtractor()
    extractor.feed(body_html)
    extractor.close()
    return " ".join("".join(extractor.parts).split())


def snippet(texts: list[str], user_query: str, width: int = SNIPPET_CHARS) -> str:
    """Safe HTML: a window of the first text that contains a query word, around that word,
    with every text character escaped and the query words wrapped in <mark>.

    `texts` are plain text in order of preference (e.g. body, summary, title); with no match
    the window is the start of the first non-empty one.
    """
    texts = [" ".join(unicodedata.normalize("NFKC", text).split()) for text in texts if text]
    needles = sorted({run for _, run in _runs(user_query)}, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, needles)), re.IGNORECASE) if needles else None
    for text in texts:
        first = pattern.search(text) if pattern else None
        if first:
            return _window(text, max(0, first.start() - width // 4), width, pattern)
    return _window(texts[0], 0, width, pattern) if texts else ""


def _window(text: str, start: int, width: int, pattern: re.Pattern | None) -> str:
    window = text[start : start + width]
    out = ["…"] if start else []
    done = 0
    for match in pattern.finditer(window) if pattern else ():
        out.append(html.escape(window[done : match.start()]))
        out.append(f"<mark>{html.escape(match.group(0))}</mark>")
        done = match.end()
    out.append(html.escape(window[done:]))
    if start + width < len(text):
        out.append("…")
    return "".join(out)
