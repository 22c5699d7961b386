"""The gate's pure rules: check a draft against the catalog, sanitise it, and turn it into a
versioned publication or withdrawal. No I/O here; handlers.py does the reading and writing."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone

from contracts.catalog import STANDARD, Catalog, Domain, Level1Item, Level2Item, Region, effective_catalog
from contracts.events import (
    Attachment,
    CatalogAttributes,
    FieldError,
    Placement,
    PlacementRef,
    PublicationData,
    PublicationDraft,
    SourceRef,
    WithdrawalData,
    WithdrawalType,
)
from contracts.identity import Principal, may_publish_for
from services.common.sanitise import sanitise_html

SUMMARY_LENGTH = 120


class Rejected(Exception):
    """The draft broke a rule; `errors` say which field and what the valid choices are."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors


class Forbidden(Exception):
    """The acting user may not publish for (some of) these regions."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(e.msg for e in errors))
        self.errors = errors


def authorize(principal: Principal, placements: list[tuple[tuple[str | int, ...], str]], directory: "Directory") -> None:
    """Every (location, region code) must be one the principal publishes for. An unknown
    region is left to validation, which refuses it with the valid choices (422)."""
    errors = [
        FieldError(loc=loc, msg=f"{principal.user} may not publish for region {region}", type="auth.region")
        for loc, region in placements
        if region in directory.regions and not may_publish_for(principal, region, directory.regions)
    ]
    if errors:
        raise Forbidden(errors)


def authorize_draft(principal: Principal, draft: PublicationDraft | None, directory: "Directory", current: PublicationData | None = None) -> None:
    """A draft's placements, and for a revision or withdrawal those already filed too: nobody
    moves another unit's publication into or out of their own column."""
    checks: list[tuple[tuple[str | int, ...], str]] = (
        [(("placements", i, "region_code"), ref.region_code) for i, ref in enumerate(draft.placements)] if draft else []
    )
    if current is not None:
        checks += [(("publication", "placements", i, "region_code"), p.region_code) for i, p in enumerate(current.placements)]
    authorize(principal, checks, directory)


class VersionConflict(Exception):
    def __init__(self, publication_id: str, expected: int | None, current: int):
        super().__init__(f"publication {publication_id} is at version {current}, not {expected}")
        self.publication_id = publication_id
        self.expected = expected
        self.current = current


@dataclass(frozen=True)
class Directory:
    """What the gate checks placements against: each scope's current catalog edition
    (standard, county, township) and the regions."""

    catalogs: dict[str, Catalog]
    regions: dict[str, Region]
    # region code → its catalog: a directory lives for a few seconds (see app.py) and the
    # gate asks for the same regions' catalogs several times per publication.
    _catalog_of: dict[str, Catalog] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def single(cls, catalog: Catalog, regions: dict[str, Region]) -> "Directory":
        return cls({STANDARD: catalog}, regions)

    def catalog_for(self, region_code: str) -> Catalog:
        catalog = self._catalog_of.get(region_code)
        if catalog is None:
            catalog = effective_catalog(region_code, self.regions, self.catalogs)
            if catalog is None:
                raise RuntimeError("no catalog is published; run `tongyuan db init`")
            self._catalog_of[region_code] = catalog
        return catalog


def _choices(pairs) -> tuple[dict[str, str], ...]:
    return tuple({"id": code, "name": name} for code, name in pairs)


def resolve_placements(refs: list[PlacementRef], directory: Directory, loc: tuple = ("placements",)) -> list[Placement]:
    """Every placement must name a known region and a level-2 item under its level-1 item."""
    errors: list[FieldError] = []
    placements: list[Placement] = []
    seen: set[tuple[str, str]] = set()
    for index, ref in enumerate(refs):
        here = (*loc, index)
        region = directory.regions.get(ref.region_code)
        if region is None:
            errors.append(FieldError(loc=(*here, "region_code"), msg=f"unknown region code {ref.region_code!r}", type="catalog.unknown_region"))
        # Each region publishes under its own localised catalog (or its nearest ancestor's).
        found = _catalog_item(ref, directory.catalog_for(ref.region_code), here)
        if isinstance(found, FieldError):
            errors.append(found)
            continue
        if region is None:
            continue
        domain, level1, level2 = found
        if (region.code, level2.id) in seen:
            errors.append(FieldError(loc=here, msg="the same region and item is given twice", type="placement.duplicate"))
            continue
        seen.add((region.code, level2.id))
        placements.append(
            Placement(
                region_code=region.code,
                domain_code=domain.code,
                level1_id=level1.id,
                level2_id=level2.id,
                region_name=region.name,
                domain_name=domain.name,
                level1_name=level1.name,
                level2_name=level2.name,
            )
        )
    if errors:
        raise Rejected(errors)
    return placements


def _catalog_item(ref: PlacementRef, catalog: Catalog, here: tuple) -> tuple[Domain, Level1Item, Level2Item] | FieldError:
    """The domain, level-1 and level-2 item a placement names, or what is wrong with it (with
    the valid choices)."""
    domain = catalog.resolve_domain(ref.domain_code)
    if domain is None:
        return FieldError(
            loc=(*here, "domain_code"),
            msg=f"unknown domain {ref.domain_code!r}",
            type="catalog.unknown_domain",
            choices=_choices((d.code, d.name) for d in catalog.domains),
        )
    level1 = next((i for i in domain.level1 if i.id == ref.level1_id), None)
    if level1 is None:
        return FieldError(
            loc=(*here, "level1_id"),
            msg=f"{ref.level1_id!r} is not a level-1 item of {domain.name}"
            + ("" if domain.level1 else f" ({domain.name} has no level-1 items in this catalog edition)"),
            type="catalog.unknown_level1",
            choices=_choices((i.id, i.name) for i in domain.level1),
        )
    level2 = next((j for j in level1.items if j.id == ref.level2_id), None)
    if level2 is None:
        return FieldError(
            loc=(*here, "level2_id"),
            msg=f"{ref.level2_id!r} is not a level-2 item of {domain.name} / {level1.name}",
            type="catalog.unknown_level2",
            choices=_choices((j.id, j.name) for j in level1.items),
        )
    return domain, level1, level2


# Any tag of sanitised HTML: nh3's output is well formed and escapes ">" inside attribute values.
_TAG = re.compile(r"<[^>]*>")


def plain_text(sanitised_html: str) -> str:
    """The text of HTML that sanitise_html produced (a regex suffices there, at a third of a
    second nh3 pass's cost)."""
    return " ".join(html.unescape(_TAG.sub("", sanitised_html)).split())


def summarise(body_html: str) -> str:
    text = plain_text(body_html)
    return text if len(text) <= SUMMARY_LENGTH else text[: SUMMARY_LENGTH - 1] + "…"


# Invisible format characters (Unicode category Cf) make a title or a file name show something
# other than what it is: bidirectional controls reorder it ("申请表\u202excod.exe" shows as
# "申请表exe.docx"), zero-width spaces and joiners split words so that two titles look alike but
# differ, or a word escapes search. Titles lose them; an attachment name with a bidi control is
# refused (see visible_text).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Joiners (ZWNJ, ZWJ, the Mongolian vowel separator) shape letters in scripts written joined —
# Uyghur's Arabic script, Mongolian, Tibetan, Indic — and stay between two letters of such a
# script; between Han characters or ASCII they only hide something.
_JOINERS = frozenset("\u200c\u200d\u180e")
# Prepended concatenation marks (Arabic number signs …) are category Cf but visible.
_VISIBLE_FORMAT = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd")


def _joined_letter(char: str) -> bool:
    return char > "\x7f" and unicodedata.category(char)[0] in "LM" and not unicodedata.name(char, "").startswith("CJK")


def without_invisible_format(text: str) -> str:
    """`text` without its invisible format characters (kept: joiners inside a joined script)."""
    if text.isprintable():  # no Cf character at all: the common case, at C speed
        return text
    kept = []
    for i, char in enumerate(text):
        if unicodedata.category(char) != "Cf" or char in _VISIBLE_FORMAT:
            kept.append(char)
        elif char in _JOINERS and 0 < i < len(text) - 1 and _joined_letter(text[i - 1]) and _joined_letter(text[i + 1]):
            kept.append(char)
    return "".join(kept)


def visible_text(draft: PublicationDraft) -> tuple[str, tuple[Attachment, ...]]:
    """The title and attachments as they will be shown: a title loses invisible format
    characters (a clerk pasting from Word or a web page brings them in by accident); an
    attachment name with a bidi control is refused, since a file name whose letters are shown
    reordered is lying about its type (an attack, not an accident), and loses the other ones."""
    errors: list[FieldError] = []
    title = without_invisible_format(draft.title).strip()
    if not title:
        errors.append(FieldError(loc=("title",), msg="标题只有不可见字符，请填写标题", type="value.invisible_only"))
    attachments = []
    for index, attachment in enumerate(draft.attachments):
        here = ("attachments", index, "name")
        found = sorted({f"U+{ord(c):04X}" for c in attachment.name if c in BIDI_CONTROLS})
        if found:
            errors.append(
                FieldError(
                    loc=here,
                    msg=f"附件名称含有改变文字显示方向的不可见控制字符（{'、'.join(found)}），会使文件类型显示错误，请删除后重新提交",
                    type="value.bidi_control",
                )
            )
            continue
        name = without_invisible_format(attachment.name).strip()
        if not name:
            errors.append(FieldError(loc=here, msg="附件名称只有不可见字符，请填写附件名称", type="value.invisible_only"))
            continue
        attachments.append(attachment if name == attachment.name else attachment.model_copy(update={"name": name}))
    if errors:
        raise Rejected(errors)
    return title, tuple(attachments)


def catalog_attributes(directory: Directory, placements: list[Placement]) -> CatalogAttributes:
    item = directory.catalog_for(placements[0].region_code).level2(placements[0].level2_id)
    if item is None:
        return CatalogAttributes()
    return CatalogAttributes(time_limit=item.time_limit, channels=item.channels, audience=item.audience, method=item.method, subject=item.subject)


# What a publication says, not who sent it or how: a redelivery by another clerk or a
# withdrawal request's own fields make no new version.
_NOT_CONTENT = {"source_ref", "withdraw", "explanation", "actor"}


def content_hash(draft: PublicationDraft) -> str:
    # pydantic serialises fields in declaration order, so the JSON is canonical for a model.
    return hashlib.sha256(draft.model_dump_json(exclude=_NOT_CONTENT).encode()).hexdigest()


def build_publication(
    draft: PublicationDraft,
    *,
    publication_id: str,
    version: int,
    index_number: str,
    source: SourceRef,
    directory: Directory,
    now: datetime,
    kind: str = "info",
    service_guide: dict | None = None,
) -> PublicationData:
    title, attachments = visible_text(draft)
    placements = resolve_placements(draft.placements, directory)
    published_at = draft.published_at or now
    if published_at.tzinfo is None:
        published_at = published_at.replace(tzinfo=timezone.utc)
    if draft.formed_at > published_at.date():
        raise Rejected([FieldError(loc=("formed_at",), msg="the information cannot be formed after it is published", type="value.formed_after_published")])
    body = sanitise_html(draft.body_html)
    return PublicationData(
        publication_id=publication_id,
        version=version,
        placements=tuple(placements),
        kind=kind,
        title=title,
        summary=draft.summary or summarise(body) or None,
        body_html=body,
        attachments=attachments,
        index_number=draft.index_number or index_number,
        publishing_body=draft.publishing_body or placements[0].region_name,
        formed_at=draft.formed_at,
        published_at=published_at,
        catalog=catalog_attributes(directory, placements),
        service_guide=service_guide,
        source_ref=source,
    )


def check_version(publication_id: str, expected: int | None, current: int) -> None:
    if expected is not None and expected != current:
        raise VersionConflict(publication_id, expected, current)


def build_withdrawal(
    current: PublicationData,
    *,
    version: int,
    withdrawal_type: WithdrawalType,
    explanation: str,
    redirect_to: str | None,
    now: datetime,
) -> WithdrawalData:
    errors = []
    if withdrawal_type in ("withdrawn", "gone") and not explanation.strip():
        errors.append(FieldError(loc=("explanation",), msg=f"a {withdrawal_type} notice needs an explanation for the public", type="value.missing"))
    if withdrawal_type == "redirect" and not redirect_to:
        errors.append(FieldError(loc=("redirect_to",), msg="a redirect needs the address to send readers to", type="value.missing"))
    if withdrawal_type != "redirect" and redirect_to:
        errors.append(FieldError(loc=("redirect_to",), msg="only a redirect takes an address", type="value.unexpected"))
    if errors:
        raise Rejected(errors)
    return WithdrawalData(
        publication_id=current.publication_id,
        version=version,
        withdrawal_type=withdrawal_type,
        explanation=explanation.strip(),
        redirect_to=redirect_to,
        withdrawn_at=now,
        title=None if withdrawal_type == "vanish" else current.title,
        placements=() if withdrawal_type == "vanish" else current.placements,
    )


def renamed_placements(data: PublicationData, catalog_for) -> tuple[Placement, ...] | None:
    """The placements with their current catalog names, or None if no name changed.

    `catalog_for(region_code)` gives the catalog in force for a placement's region; an item
    the catalog no longer has keeps its old name (the column shows it in its archive)."""
    renamed, changed = [], False
    for placement in data.placements:
        catalog = catalog_for(placement.region_code)
        names = {
            "domain_name": getattr(catalog.domain(placement.domain_code), "name", None),
            "level1_name": getattr(catalog.level1(placement.level1_id), "name", None),
            "level2_name": getattr(catalog.level2(placement.level2_id), "name", None),
        }
        update = {k: v for k, v in names.items() if v and v != getattr(placement, k)}
        changed = changed or bool(update)
        renamed.append(placement.model_copy(update=update))
    return tuple(renamed) if changed else None
