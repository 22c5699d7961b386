"""Chinese-aware terms, query parsing and highlighting, shared by the search adapters (pure functions).

Chinese has no spaces, so CJK text is indexed as overlapping bigrams (最低生活保障 → 最低 低生
生活 活保 保障): a query word of two or more characters is then a phrase of its bigrams, with
no dictionary to maintain, and a two-character word (低保) is a single term. Letters and
digits are indexed as words, lowercased, after the bigrams and in text order, so a code such as
an 索引号 (430102001/2026-00001) is a phrase of its words. Where a word touches a CJK
character (2022年, 第3批) the pair is also one term, so 2022年 is a single, selective term
instead of the common 2022 and the single character 年. A CJK character standing alone
(between punctuation) is indexed on its own; a one-character query matches it or any bigram
that contains the character. Quotation and title marks (“”《》…) do not end a run.

Terms are written space-separated; the index splits them at spaces only.
"""

from __future__ import annotations

import html
import re
import unicodedata
from array import array
from functools import lru_cache

# Unified ideographs, extension A, compatibility ideographs, extensions B–G, and 〇.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"

SNIPPET_CHARS = 120
# A query is cut into at most this many required parts; the rest is ignored (a 500-character
# query of distinct words stays one bounded query).
MAX_PARTS = 32

# Text made only of ASCII, common CJK ideographs and CJK/full-width punctuation needs no NFKC:
# NFKC would change only punctuation there, which separates terms either way. Anything else
# (full-width letters and digits, compatibility ideographs, circled numbers …) is normalised.
_NEEDS_NFKC = re.compile(
    "[^\x00-\x7f\u3000-\u3037\u303b-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2010-\u2027\u2030-\u205e]"
)
_WORD = re.compile("[0-9a-z]+")
_NOT_CJK = re.compile(f"[^{_CJK}]+")
# Quotation and title marks sit inside words as often as around them (“三公”经费, 《条例》):
# they do not end a run, so 三公经费 is found in “三公”经费.
_INLINE_MARKS = "“”‘’\"'「」『』《》〈〉·・"
_INLINE = re.compile(f"[{_INLINE_MARKS}]+")
_CJK_RUN = re.compile(f"[{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A query part: a CJK run, or letters/digits joined by punctuation (a code: pm2.5, 430102001/2026-00001).
_PART = re.compile(f"([{_CJK}]+)|([0-9a-z]+(?:[^\\s{_CJK}0-9a-z]+[0-9a-z]+)*)")

_SPACE = array("I", [32])
assert _SPACE.itemsize == 4, "UTF-32 code units must fit array('I')"


def normalise(text: str) -> str:
    """NFKC (only when it can matter) and lower case: what the index and the query both see."""
    if _NEEDS_NFKC.search(text):
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def index_terms(text: str) -> str:
    """CJK bigrams, then lowercased ASCII words, then CJK characters that stand alone, then
    the terms joining a word and the CJK character it touches."""
    folded = _INLINE.sub("", normalise(text))
    runs = _CJK_RUN.findall(folded)
    lone = [run for run in runs if len(run) == 1]
    words, word_then_cjk, cjk_then_word = [], [], []
    # Joins from the words' neighbours: a text has few words, and two more regex scans of
    # the whole text for them cost a quarter of the tokenising.
    cjk_at = _CJK_CHAR.match
    for match in _WORD.finditer(folded):
        word, start, end = match.group(), match.start(), match.end()
        words.append(word)
        if cjk_at(folded, end):
            word_then_cjk.append(word + folded[end])
        if start and cjk_at(folded, start - 1):
            cjk_then_word.append(folded[start - 1] + word)
    return " ".join(filter(None, (_bigrams(runs), *words, *lone, *word_then_cjk, *cjk_then_word)))


def char_terms(text: str) -> str:
    """Every CJK character of the text (what a one-character query can match)."""
    return " ".join(_NOT_CJK.sub("", normalise(text)))


def _bigrams(runs: list[str]) -> str:
    """Every overlapping pair of characters within the CJK runs, space-separated.

    The pairs' first characters (each run but its last) and second characters (each run but
    its first) are interleaved in C by array slicing: indexing is the consumer's hot path,
    and per-pair Python code costs several times more."""
    firsts = "".join([run[:-1] for run in runs])
    size = len(firsts)
    if not size:
        return ""
    pairs = array("I", bytes(12 * size - 4))
    pairs[0::3] = array("I", firsts.encode("utf-32-le"))
    pairs[1::3] = array("I", "".join([run[1:] for run in runs]).encode("utf-32-le"))
    pairs[2::3] = _SPACE * (size - 1)
    return pairs.tobytes().decode("utf-32-le")


# --- queries ------------------------------------------------------------------------------


def _chunks(user_query: str) -> list[list[tuple[bool, str]]]:
    """The query's parts as (is_cjk, text), grouped into chunks of parts written together
    (2022年, 第3批, 最低生活保障, 430102001/2026-00001)."""
    chunks: list[list[tuple[bool, str]]] = []
    end = -1
    for n, match in enumerate(_PART.finditer(_INLINE.sub("", normalise(user_query)))):
        if n == MAX_PARTS:
            break
        part = (match.group(1) is not None, match.group(0))
        if match.start() == end:
            chunks[-1].append(part)
        else:
            chunks.append([part])
        end = match.end()
    return chunks


def query_parts(user_query: str) -> list[str]:
    """What a hit must contain, folded, in order, without repeats: each CJK run, code or
    word, with the ones written together kept together (2022年, 第3批, 430102001/2026-00001).

    Nothing a user types is syntax: quotes, operators, brackets, `field:`, `*`, SQL or emoji
    only separate parts, so parsing cannot fail.
    """
    parts: list[str] = []
    for chunk in _chunks(user_query):
        part = "".join(text for _, text in chunk)
        if part not in parts:
            parts.append(part)
    return parts


def query_phrases(user_query: str) -> list[tuple[str, ...]]:
    """The index terms each required part must match, in order: a CJK run's bigrams, a
    code's words, and where a code and a CJK run touch, the joining term (2022年 → "2022年";
    the year alone and 年 alone are then implied). A CJK character on its own is a phrase of
    itself (it matches alone or inside any bigram)."""
    phrases: list[tuple[str, ...]] = []
    for chunk in _chunks(user_query):
        for n, (cjk, text) in enumerate(chunk):
            joined = len(chunk) > 1
            if cjk:
                if len(text) > 1:
                    phrases.append(tuple(text[i : i + 2] for i in range(len(text) - 1)))
                elif not joined:
                    phrases.append((text,))
            else:
                words = tuple(_WORD.findall(text))
                if len(words) > 1 or not joined:
                    phrases.append(words)
            if n + 1 < len(chunk):
                following = chunk[n + 1][1]
                head = _WORD.match(following)
                phrases.append((text[-1] + (head.group(0) if head else ""),) if cjk else (_WORD.findall(text)[-1] + following[0],))
    unique: list[tuple[str, ...]] = []
    for phrase in phrases:
        if phrase not in unique:
            unique.append(phrase)
    return unique


def is_single_char(phrase: tuple[str, ...]) -> bool:
    """A one-character CJK phrase: it matches that character alone or inside a bigram."""
    return len(phrase) == 1 and len(phrase[0]) == 1 and _NOT_CJK.fullmatch(phrase[0]) is None


def matches(phrases: list[tuple[str, ...]], *texts: str) -> bool:
    """The index's matching rule in Python (for the in-memory index): every phrase occurs,
    as consecutive terms, in one of the texts."""
    terms = [index_terms(text).split() for text in texts]
    chars = set(char_terms(" ".join(texts)).split()) if any(map(is_single_char, phrases)) else set()
    return all(phrase[0] in chars if is_single_char(phrase) else any(_contains(column, phrase) for column in terms) for phrase in phrases)


def _contains(terms: list[str], phrase: tuple[str, ...]) -> bool:
    size = len(phrase)
    return any(tuple(terms[i : i + size]) == phrase for i in range(len(terms) - size + 1))


# --- text and highlighting ----------------------------------------------------------------

_BLOCK = "p|br|div|li|tr|td|th|h[1-6]|ul|ol|table|blockquote|section|article|dt|dd|hr"
# Script/style with their content; block tags (a space); any other tag (nothing); comments.
_MARKUP = re.compile(f"<(script|style)\\b.*?</\\1\\s*>|<!--.*?-->|<(/?)({_BLOCK})\\b[^>]*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def plain_text(body_html: str) -> str:
    """The visible text of an (already sanitised) HTML fragment, whitespace collapsed."""
    text = _MARKUP.sub(lambda m: " " if m.group(3) else "", body_html)
    return " ".join(html.unescape(text).split())


def highlight(text: str, user_query: str) -> str:
    """Safe HTML of the whole text: escaped, the query's parts wrapped in <mark>."""
    return _marked(text, 0, len(text), _needles(user_query))


def snippet(texts: list[str], user_query: str, width: int = SNIPPET_CHARS) -> str:
    """Safe HTML: a window of the first text that contains a query part, around it, with
    every character escaped and the parts in <mark>.

    `texts` are plain text in order of preference (e.g. body, summary, title); with no match
    the window is the start of the first non-empty one.
    """
    texts = [" ".join(text.split()) for text in texts if text]
    pattern = _needles(user_query)
    for text in texts:
        first = _find(pattern, text)
        if first is not None:
            return _marked(text, max(0, first - width // 4), width, pattern)
    return _marked(texts[0], 0, width, pattern) if texts else ""


@lru_cache(maxsize=256)
def _needles(user_query: str) -> re.Pattern | None:
    """What to mark, matched against folded text: each chunk of the query, allowing the
    quotation marks a CJK run may contain and the punctuation between a code's words."""
    alternatives = []
    for chunk in sorted(_chunks(user_query), key=lambda parts: sum(len(text) for _, text in parts), reverse=True):
        pieces = []
        for cjk, text in chunk:
            if cjk:
                pieces.append(f"[{_INLINE_MARKS}]*".join(map(re.escape, text)))
            else:
                pieces.append(f"[^{_CJK}0-9a-z]*".join(map(re.escape, _WORD.findall(text))))
        alternatives.append("".join(pieces))
    return re.compile("|".join(alternatives)) if alternatives else None


def _folded_with_origin(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each of its characters, the index of the original one."""
    if not _NEEDS_NFKC.search(text):
        return text.lower(), list(range(len(text) + 1))
    folded, origin = [], []
    for i, char in enumerate(text):
        piece = unicodedata.normalize("NFKC", char).lower()
        folded.append(piece)
        origin += [i] * len(piece)
    origin.append(len(text))
    return "".join(folded), origin


def _find(pattern: re.Pattern | None, text: str) -> int | None:
    if pattern is None:
        return None
    folded, origin = _folded_with_origin(text)
    match = pattern.search(folded)
    return origin[match.start()] if match else None


def _marked(text: str, start: int, width: int, pattern: re.Pattern | None) -> str:
    """Escaped text[start:start+width] with the needles' matches in <mark> (found on the
    folded text, marked on the original, so 全角 text is shown as written)."""
    end = min(len(text), start + width)
    window = text[start:end]
    out = ["…"] if start else []
    done = 0
    if pattern is not None:
        folded, origin = _folded_with_origin(window)
        for match in pattern.finditer(folded):
            if match.end() == match.start():
                continue
            begin, finish = origin[match.start()], origin[match.end() - 1] + 1
            if begin < done:
                continue
            out.append(html.escape(window[done:begin]))
            out.append(f"<mark>{html.escape(window[begin:finish])}</mark>")
            done = finish
    out.append(html.escape(window[done:]))
    if end < len(text):
        out.append("…")
    return "".join(out)
