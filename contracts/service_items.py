"""Government-service items (政务服务事项) as the integrated platform publishes them, and the
event the bridge sends the gate when one changes.

An item is identified by its 实施编码 (implementation code):
`基本编码-12位区划代码-000-18位统一社会信用代码-版本-业务办理项`, e.g.
`511A0138000000-511602000000-000-115113010833722043-1-00`. The same basic item (基本编码) is
implemented by many units; each implementation has its own code and its own 办事指南.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, HttpUrl, field_validator, model_validator

from .events import SERVICE_ITEM_CHANGED, CloudEvent, Contract, PlacementRef
from .identity import Principal

ITEM_TYPES: dict[str, str] = {
    "01": "行政许可",
    "02": "行政处罚",
    "03": "行政强制",
    "04": "行政征收",
    "05": "行政给付",
    "06": "行政检查",
    "07": "行政确认",
    "08": "行政奖励",
    "09": "行政裁决",
    "10": "其他行政权力",
    "20": "公共服务",
}
ItemType = Literal["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "20"]

# The tab/section order of a 办事指南 as provincial platforms show it; the column's detail page
# and the flattened body the gate stores follow it too.
GUIDE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("basic", "基本信息"),
    ("conditions", "受理条件"),
    ("materials", "申请材料"),
    ("process", "办理流程"),
    ("time_limits", "办理时限"),
    ("place", "办理地点和时间"),
    ("fees", "收费标准"),
    ("basis", "设定依据"),
    ("contact", "咨询监督"),
    ("faq", "常见问题"),
)

_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015: no I, O, S, V, Z
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
IMPLEMENTATION_CODE = re.compile(r"^(?P<basic>[0-9A-Z]{8,20})-(?P<area>\d{12})-000-(?P<credit>[0-9A-HJ-NPQRTUWXY]{18})-(?P<version>\d{1,2})-(?P<branch>\d{2})$")


def credit_code_check(first17: str) -> str:
    """The check character of a unified social credit code (统一社会信用代码, GB 32100-2015)."""
    total = sum(_CREDIT_ALPHABET.index(ch) * w for ch, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return _CREDIT_ALPHABET[(31 - total % 31) % 31]


def organization_code_check(first8: str) -> str:
    """The check character of a 9-character organization code (GB 11714-1997)."""
    total = sum((int(ch) if ch.isdigit() else ord(ch) - 55) * w for ch, w in zip(first8, _ORG_WEIGHTS, strict=True))
    remainder = 11 - total % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def valid_credit_code(code: str) -> bool:
    return len(code) == 18 and all(ch in _CREDIT_ALPHABET for ch in code) and credit_code_check(code[:17]) == code[17]


def area_of(implementation_code: str) -> str:
    """The 12-digit area code (区划代码) inside an implementation code."""
    match = IMPLEMENTATION_CODE.match(implementation_code)
    if match is None:
        raise ValueError(f"not an implementation code: {implementation_code!r}")
    return match["area"]


PlainText = Annotated[str, Field(max_length=4000)]
ShortText = Annotated[str, Field(min_length=1, max_length=300)]


def _web_link(value: HttpUrl | None) -> HttpUrl | None:
    if value is not None and value.scheme not in ("http", "https"):
        raise ValueError("must be an http(s) link")
    return value


class Material(Contract):
    """One 申请材料 row."""

    name: ShortText
    required: bool = True  # 是否必需
    form: Annotated[str, Field(max_length=60)] = "原件"  # 材料形式: 原件 / 复印件 / 电子证照 …
    copies: Annotated[int, Field(ge=0, le=100)] = 1  # 份数
    source: Annotated[str, Field(max_length=100)] = "申请人自备"  # 来源渠道
    blank_form_url: HttpUrl | None = None  # 空白表格
    sample_url: HttpUrl | None = None  # 示例样表
    note: Annotated[str, Field(max_length=1000)] = ""

    _links = field_validator("blank_form_url", "sample_url")(_web_link)


class ProcessStep(Contract):
    """One step of 办理流程."""

    name: ShortText
    description: PlainText = ""
    time_limit: Annotated[str, Field(max_length=60)] = ""


class Fees(Contract):
    charged: bool = False  # 是否收费
    standard: PlainText = ""  # 收费标准
    basis: PlainText = ""  # 收费依据


class Question(Contract):
    question: ShortText
    answer: PlainText


class ServiceGuide(Contract):
    """办事指南: what the applicant needs to know, in the platform's standard sections."""

    conditions: Annotated[tuple[PlainText, ...], Field(max_length=50)] = ()  # 受理条件
    materials: Annotated[tuple[Material, ...], Field(max_length=100)] = ()  # 申请材料
    process: Annotated[tuple[ProcessStep, ...], Field(max_length=30)] = ()  # 办理流程
    legal_time_limit: Annotated[str, Field(max_length=60)] = ""  # 法定办结时限
    promised_time_limit: Annotated[str, Field(max_length=60)] = ""  # 承诺办结时限
    place: Annotated[str, Field(max_length=300)] = ""  # 办理地点
    hours: Annotated[str, Field(max_length=300)] = ""  # 办理时间
    fees: Fees = Fees()  # 是否收费 / 收费标准 / 收费依据
    basis: Annotated[tuple[PlainText, ...], Field(max_length=30)] = ()  # 设定依据
    consult_phone: Annotated[str, Field(max_length=60)] = ""  # 咨询电话
    complaint_phone: Annotated[str, Field(max_length=60)] = ""  # 监督投诉电话
    faq: Annotated[tuple[Question, ...], Field(max_length=50)] = ()  # 常见问题
    online_url: HttpUrl | None = None  # 网上办理

    _links = field_validator("online_url")(_web_link)


class ServiceItem(Contract):
    """One implementation of a service item by one unit, with its full guide."""

    item_type: ItemType
    basic_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{8,20}$")]  # 基本编码
    implementation_code: Annotated[str, Field(max_length=80)]  # 实施编码
    area_code: Annotated[str, Field(pattern=r"^\d{12}$")]  # 实施区划 (12 digits)
    name: ShortText  # 事项名称
    department: ShortText  # 实施主体
    department_credit_code: Annotated[str, Field(min_length=18, max_length=18)]  # 实施主体统一社会信用代码
    guide: ServiceGuide

    @property
    def type_name(self) -> str:
        return ITEM_TYPES[self.item_type]

    @model_validator(mode="after")
    def _code_agrees(self) -> "ServiceItem":
        match = IMPLEMENTATION_CODE.match(self.implementation_code)
        if match is None:
            raise ValueError("implementation_code must look like 基本编码-12位区划代码-000-统一社会信用代码-版本-办理项")
        if match["basic"] != self.basic_code:
            raise ValueError("implementation_code must start with basic_code")
        if match["area"] != self.area_code:
            raise ValueError("implementation_code must carry area_code")
        if match["credit"] != self.department_credit_code or not valid_credit_code(self.department_credit_code):
            raise ValueError("implementation_code must carry the department's valid unified social credit code")
        return self


class ServiceItemChangedData(Contract):
    """An item changed on the platform (or was revoked there): what the gate needs to publish it.

    `placements` are the catalog placements the bridge's mapping chose; `content_hash` covers the
    item and its placements, so a repeat of the same state is recognisable anywhere. `actor` is
    the bridge's own principal (an editor for the regions it is configured for): like a CMS
    event's, it comes as data over a topic trusted by transport, and the gate authorises it.
    """

    platform: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]
    implementation_code: Annotated[str, Field(min_length=1, max_length=80)]
    content_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    revoked: bool = False
    item: ServiceItem | None = None
    title: Annotated[str | None, Field(max_length=300)] = None  # the last known name, for a revocation
    placements: Annotated[tuple[PlacementRef, ...], Field(max_length=20)] = ()
    platform_updated_at: datetime | None = None
    actor: Principal

    @model_validator(mode="after")
    def _complete(self) -> "ServiceItemChangedData":
        if not self.revoked:
            if self.item is None:
                raise ValueError("a changed item carries the item")
            if self.item.implementation_code != self.implementation_code:
                raise ValueError("item.implementation_code differs from implementation_code")
            if not self.placements:
                raise ValueError("a changed item carries at least one placement")
        return self


class ServiceItemChangedEvent(CloudEvent[ServiceItemChangedData]):
    type: Literal["cn.gov.tongyuan.service-item.changed.v1"] = SERVICE_ITEM_CHANGED
