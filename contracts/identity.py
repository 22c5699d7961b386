"""Who may publish where (一号登录): the claims a token carries and the rule they obey.

A county editor publishes for the county and its townships; a township editor only for the
township; an admin anywhere. Pure logic over the region hierarchy (see catalog.scope_chain).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .catalog import Region, scope_chain

Role = Literal["editor", "approver", "admin"]


class Principal(BaseModel):
    """The acting user: from a verified bearer token, or carried by a CMS event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user: Annotated[str, Field(min_length=1, max_length=120)]
    roles: tuple[Role, ...] = ()
    regions: tuple[Annotated[str, Field(max_length=20)], ...] = ()

    def has(self, role: Role) -> bool:
        return role in self.roles or "admin" in self.roles


def may_publish_for(principal: Principal, region_code: str, regions: dict[str, Region]) -> bool:
    """True when the principal edits for this region or one of its ancestors."""
    if "admin" in principal.roles:
        return True
    if "editor" not in principal.roles:
        return False
    return bool(set(scope_chain(region_code, regions)) & set(principal.regions))
