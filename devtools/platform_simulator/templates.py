"""The simulated platform's basic items (基本编码) and how every unit implements them: the
township offices' own items and the county bureaus', as data in templates.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

# The platform's own area code for 长沙高新区, which has no statistical code (our 4301GX); the
# bridge's mapping data carries the alias. Made up for the simulator, like the platform would.
HIGH_TECH_ZONE_AREA = "430190000000"
PLATFORM = "hunan-zwfw"
ROADS = ("人民路", "建设路", "解放路", "韶山路", "芙蓉路", "五一大道", "劳动路", "车站路", "雨花路", "湘江路", "金星路", "开元路")
HOURS = "周一至周五 上午9:00—12:00，下午13:30—17:30（法定节假日除外）"
COUNTY_HOURS = "周一至周五 上午8:30—12:00，下午13:30—17:00；周六上午9:00—12:00（延时服务，法定节假日除外）"


@dataclass(frozen=True)
class Template:
    """One basic item (基本编码) as every unit at `level` implements it."""

    seq: int
    item_type: str
    name: str
    level: str  # "township" | "county"
    bureau: str  # "" for a township's own office, else the county bureau (民政局 …)
    conditions: tuple[str, ...]
    materials: tuple[tuple, ...]  # (name, required, form, copies, source, blank form?)
    process: tuple[tuple[str, str, str], ...]
    legal: str
    promised: str
    basis: tuple[str, ...]
    faq: tuple[tuple[str, str], ...] = ()
    fee: tuple[bool, str, str] = (False, "", "")
    online: bool = True

    @property
    def basic_code(self) -> str:
        return f"43{self.item_type}{self.seq:04d}000000"


def _material(entry: str | dict[str, Any], shared: dict[str, dict[str, Any]]) -> tuple:
    """A material written out, or the name of one many items ask for (居民身份证 …)."""
    m = shared[entry] if isinstance(entry, str) else entry
    return (m["name"], m["required"], m["form"], m["copies"], m["source"], m["blank_form"])


def _template(entry: dict[str, Any], shared: dict[str, dict[str, Any]]) -> Template:
    fees = entry.get("fees", {"charged": False, "standard": "", "basis": ""})
    return Template(
        seq=entry["seq"],
        item_type=entry["item_type"],
        name=entry["name"],
        level=entry["level"],
        bureau=entry["bureau"],
        conditions=tuple(entry["conditions"]),
        materials=tuple(_material(m, shared) for m in entry["materials"]),
        process=tuple((p["name"], p["description"], p["time_limit"]) for p in entry["process"]),
        legal=entry["legal_time_limit"],
        promised=entry["promised_time_limit"],
        basis=tuple(entry["basis"]),
        faq=tuple((f["question"], f["answer"]) for f in entry.get("faq", ())),
        fee=(fees["charged"], fees["standard"], fees["basis"]),
        online=entry.get("online", True),
    )


def _load() -> tuple[Template, ...]:
    data = json.loads(resources.files(__package__).joinpath("templates.json").read_text("utf-8"))
    return tuple(_template(entry, data["shared_materials"]) for entry in data["templates"])


TEMPLATES = _load()
TOWNSHIP_TEMPLATES = tuple(t for t in TEMPLATES if t.level == "township")
COUNTY_TEMPLATES = tuple(t for t in TEMPLATES if t.level == "county")
