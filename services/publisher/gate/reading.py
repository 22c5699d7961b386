"""What a reader of the publish API may see of a publication (pure).

A live publication is public. Once withdrawn its content is not: 低保 and 特困 lists are
withdrawn because they hold personal data. Anonymous readers, and users whose roles and regions
do not cover it, get the tombstone only, with the status the column page answers (`gone` 410,
`vanish` 404); an editor or approver of a region it is filed under (or above), or an admin,
gets the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.catalog import Region, scope_chain
from contracts.identity import Principal
from services.publisher.store import StoredPublication

READERS_OF_WITHDRAWN = ("editor", "approver")
# What the public may read of a withdrawal, by type; the explanation is written for the public.
PUBLIC_EXPLANATION = ("withdrawn", "gone")


@dataclass(frozen=True)
class View:
    status_code: int
    body: dict[str, Any]
    full: bool  # the whole record: a response for that reader only


def may_read_withdrawn(principal: Principal | None, stored: StoredPublication, regions: dict[str, Region]) -> bool:
    if principal is None:
        return False
    if "admin" in principal.roles:
        return True
    if not any(role in principal.roles for role in READERS_OF_WITHDRAWN):
        return False
    filed = {p.region_code for p in stored.document.placements} | {p.region_code for p in (stored.withdrawal.placements if stored.withdrawal else ())}
    return any(set(scope_chain(code, regions)) & set(principal.regions) for code in filed)


def full_record(stored: StoredPublication) -> dict[str, Any]:
    return {
        "publication_id": stored.publication_id,
        "version": stored.version,
        "status": stored.status,
        "publication": stored.document.model_dump(mode="json"),
        "withdrawal": stored.withdrawal.model_dump(mode="json") if stored.withdrawal else None,
    }


def tombstone(stored: StoredPublication) -> dict[str, Any]:
    withdrawal = stored.withdrawal
    assert withdrawal is not None
    public: dict[str, Any] = {"withdrawal_type": withdrawal.withdrawal_type, "withdrawn_at": withdrawal.withdrawn_at.isoformat()}
    if withdrawal.withdrawal_type in PUBLIC_EXPLANATION:
        public["explanation"] = withdrawal.explanation
    if withdrawal.withdrawal_type == "redirect":
        public["redirect_to"] = withdrawal.redirect_to
    return {"publication_id": stored.publication_id, "version": stored.version, "status": stored.status, "withdrawal": public}


def view_for(stored: StoredPublication, principal: Principal | None, regions: dict[str, Region]) -> View:
    if stored.status != "withdrawn" or stored.withdrawal is None:
        return View(200, full_record(stored), full=False)
    if may_read_withdrawn(principal, stored, regions):
        return View(200, full_record(stored), full=True)
    kind = stored.withdrawal.withdrawal_type
    if kind == "vanish":
        return View(404, {"detail": "no such publication"}, full=False)
    return View(410 if kind == "gone" else 200, tombstone(stored), full=False)
