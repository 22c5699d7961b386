"""The simulated platform's items: seeded from the templates over Changsha's units, and the
faults it can be told to show."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, fields
from datetime import datetime

from contracts.catalog import HIGH_TECH_ZONE_CODE, Region, regions_of_city
from contracts.service_items import credit_code_check, organization_code_check

from .templates import COUNTY_HOURS, HIGH_TECH_ZONE_AREA, HOURS, ROADS, TEMPLATES, Template


@dataclass
class Faults:
    """Probabilities per response; `hang_seconds` is how long a timed-out request hangs."""

    timeout: float = 0.0
    error: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    duplicate_page: float = 0.0
    reorder: float = 0.0
    delete_between: float = 0.0
    cursor_backwards: float = 0.0
    hang_seconds: float = 5.0

    @classmethod
    def every_kind(cls, rate: float, hang_seconds: float = 1.0) -> "Faults":
        return cls(**{f.name: rate for f in fields(cls) if f.name != "hang_seconds"}, hang_seconds=hang_seconds)

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """`timeout=0.05,error=0.1` or `all=0.05`."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name == "all":
                return cls.every_kind(float(value))
            if name not in {f.name for f in fields(cls)}:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(f.name for f in fields(cls))}, all")
            values[name] = float(value)
        return cls(**values)


@dataclass
class SimItem:
    document: dict  # the ServiceItem as JSON
    status: str  # active | revoked
    version: int
    updated_at: datetime

    def summary(self) -> dict:
        return {
            "implementation_code": self.document["implementation_code"],
            "name": self.document["name"],
            "item_type": self.document["item_type"],
            "status": self.status,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }

    def detail(self) -> dict:
        return {**self.document, "status": self.status, "version": self.version, "updated_at": self.updated_at.isoformat()}


def _department(region: Region, template: Template, county_name: str) -> str:
    if template.level == "township":
        return f"{region.name}办事处" if region.name.endswith("街道") else f"{region.name}人民政府"
    return f"{county_name}{template.bureau}"


def _credit_code(rng: random.Random, area6: str) -> str:
    body = f"{rng.randrange(10**7, 10**8)}"
    org = body + organization_code_check(body)
    first17 = f"11{area6}{org}"  # 1 = 机构编制, 1 = 机关
    return first17 + credit_code_check(first17)


def _area_code(region: Region) -> str:
    if region.code == HIGH_TECH_ZONE_CODE:
        return HIGH_TECH_ZONE_AREA
    return region.code.ljust(12, "0")


def seed_items(count: int, *, seed: int = 20260302, base_url: str = "http://127.0.0.1:8700", regions: tuple[Region, ...] | None = None) -> list[dict]:
    """`count` items (at most one per basic item and unit), deterministic for a seed."""
    regions = regions or regions_of_city("4301")
    rng = random.Random(seed)
    by_code = {r.code: r for r in regions}
    counties = [r for r in regions if r.level == "county"]
    townships = [r for r in regions if r.level == "township"]
    pairs = [(t, r) for t in TEMPLATES for r in (townships if t.level == "township" else counties)]
    rng.shuffle(pairs)
    chosen = sorted(pairs[:count], key=lambda p: (p[1].code, p[0].seq))
    credit: dict[str, str] = {}
    items = []
    for template, region in chosen:
        # A township's parent is its county: seeded regions always name one.
        county = region if region.level == "county" else by_code[region.parent_code or ""]
        department = _department(region, template, county.name)
        area = _area_code(region)
        if department not in credit:
            credit[department] = _credit_code(rng, (area[:6] if area[:6].isdigit() else "430100"))
        code = f"{template.basic_code}-{area}-000-{credit[department]}-1-00"
        items.append(_document(template, region, county, department, code, credit[department], area, rng, base_url))
    return items


def _document(
    template: Template, region: Region, county: Region, department: str, code: str, credit: str, area: str, rng: random.Random, base_url: str
) -> dict:
    township = template.level == "township"
    road = rng.choice(ROADS)
    place = (
        f"{county.name}{region.name}便民服务中心（{road}{rng.randrange(1, 300)}号）{rng.randrange(1, 8)}号窗口"
        if township
        else f"{county.name}政务服务中心（{road}{rng.randrange(1, 500)}号）{rng.randrange(1, 4)}楼{template.bureau}窗口"
    )
    materials = []
    for index, (name, required, form, copies, source, blank) in enumerate(template.materials, start=1):
        materials.append(
            {
                "name": name,
                "required": required,
                "form": form,
                "copies": copies,
                "source": source,
                "blank_form_url": f"{base_url}/forms/{template.basic_code}-{index}.docx" if blank else None,
                "sample_url": f"{base_url}/forms/{template.basic_code}-{index}-sample.pdf" if blank else None,
                "note": "",
            }
        )
    return {
        "item_type": template.item_type,
        "basic_code": template.basic_code,
        "implementation_code": code,
        "area_code": area,
        "name": template.name,
        "department": department,
        "department_credit_code": credit,
        "guide": {
            "conditions": list(template.conditions),
            "materials": materials,
            "process": [{"name": n, "description": d, "time_limit": t} for n, d, t in template.process],
            "legal_time_limit": template.legal,
            "promised_time_limit": template.promised,
            "place": place,
            "hours": HOURS if township else COUNTY_HOURS,
            "fees": {"charged": template.fee[0], "standard": template.fee[1] or "不收费", "basis": template.fee[2]},
            "basis": list(template.basis),
            "consult_phone": f"0731-8{rng.randrange(10**6, 10**7)}",
            "complaint_phone": "12345（长沙市12345政务服务便民热线）",
            "faq": [{"question": q, "answer": a} for q, a in template.faq],
            "online_url": f"{base_url}/apply/{code}" if template.online else None,
        },
    }


def item_fingerprint(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
