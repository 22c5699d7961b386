"""The bridge lane of the gate: `cn.gov.tongyuan.service-item.changed.v1` events from
tongyuan.service-items.v1 become publications of kind "service" through the same code path as
CMS requests (`batches.accept_cms_batch`): validated against the catalog, sanitised, versioned,
written with their outbox row in one transaction.

- Keyed by 实施编码: source `/bridge/<platform>` + source_ref = 实施编码, so one item is one
  publication for ever (a later event revises it, a revocation withdraws it).
- The 办事指南 travels as `PublicationData.service_guide` (the detail page renders it in the
  platform's section order) and, flattened into sanitised HTML, as `body_html`, so search,
  summaries and consumers that do not know guides show the whole guide too.
- A redelivered event (same id) and an unchanged item create no new version.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from pydantic import ValidationError

from contracts.events import SERVICE_ITEM_CHANGED, Attachment, FieldError, PublishRequestData
from contracts.service_items import GUIDE_SECTIONS, ITEM_TYPES, ServiceItem, ServiceItemChangedData
from services.publisher.store import Publisher

from . import batches
from .domain import Directory
from .inbound import Outcome, _pydantic_errors, _reject, check_envelope, through_the_gate

SUMMARY_LENGTH = 200


def _inbound(event_id: str, source: str, request: PublishRequestData, guide: dict | None) -> batches.InboundRequest:
    return batches.InboundRequest(event_id=event_id, source=source, request=request, kind="service", service_guide=guide)


def service_guide(item: ServiceItem) -> dict:
    """What `PublicationData.service_guide` holds: the item's identity and its whole guide."""
    return {
        "implementation_code": item.implementation_code,
        "basic_code": item.basic_code,
        "item_type": item.item_type,
        "type_name": ITEM_TYPES[item.item_type],
        "name": item.name,
        "department": item.department,
        "department_credit_code": item.department_credit_code,
        "area_code": item.area_code,
        **item.guide.model_dump(mode="json"),
    }


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _link(url, text: str) -> str:
    return f'<a href="{_e(url)}">{_e(text)}</a>'


def guide_html(item: ServiceItem) -> str:
    """The whole guide as HTML, sections in GUIDE_SECTIONS order; every value escaped (the gate
    sanitises it again, as it does every body)."""
    guide, fees = item.guide, item.guide.fees
    parts = {
        "basic": _basic_html(item),
        "conditions": "<ol>" + "".join(f"<li>{_e(c)}</li>" for c in guide.conditions) + "</ol>" if guide.conditions else "<p>无</p>",
        "materials": _materials_html(item),
        "process": _process_html(item),
        "time_limits": f"<p>法定办结时限：{_e(guide.legal_time_limit or '无')}</p><p>承诺办结时限：{_e(guide.promised_time_limit or '无')}</p>",
        "place": f"<p>办理地点：{_e(guide.place)}</p><p>办理时间：{_e(guide.hours)}</p>",
        "fees": (
            f"<p>是否收费：{'是' if fees.charged else '否'}</p>"
            + (f"<p>收费标准：{_e(fees.standard)}</p>" if fees.standard else "")
            + (f"<p>收费依据：{_e(fees.basis)}</p>" if fees.basis else "")
        ),
        "basis": "<ul>" + "".join(f"<li>{_e(b)}</li>" for b in guide.basis) + "</ul>" if guide.basis else "<p>无</p>",
        "contact": f"<p>咨询电话：{_e(guide.consult_phone)}</p><p>监督投诉电话：{_e(guide.complaint_phone)}</p>",
        "faq": "<dl>" + "".join(f"<dt>{_e(q.question)}</dt><dd>{_e(q.answer)}</dd>" for q in guide.faq) + "</dl>" if guide.faq else "<p>暂无</p>",
    }
    return "".join(f"<section><h2>{_e(title)}</h2>{parts[key]}</section>" for key, title in GUIDE_SECTIONS)


def _basic_html(item: ServiceItem) -> str:
    return (
        "<table><tbody>"
        f"<tr><th>事项名称</th><td>{_e(item.name)}</td></tr>"
        f"<tr><th>事项类型</th><td>{_e(ITEM_TYPES[item.item_type])}</td></tr>"
        f"<tr><th>实施主体</th><td>{_e(item.department)}</td></tr>"
        f"<tr><th>基本编码</th><td>{_e(item.basic_code)}</td></tr>"
        f"<tr><th>实施编码</th><td>{_e(item.implementation_code)}</td></tr>"
        + (f"<tr><th>网上办理</th><td>{_link(item.guide.online_url, '在线申请')}</td></tr>" if item.guide.online_url else "")
        + "</tbody></table>"
    )


def _materials_html(item: ServiceItem) -> str:
    rows = []
    for m in item.guide.materials:
        forms = " ".join(
            filter(None, [_link(m.blank_form_url, "空白表格") if m.blank_form_url else "", _link(m.sample_url, "示例样表") if m.sample_url else ""])
        )
        rows.append(
            f"<tr><td>{_e(m.name)}</td><td>{'必需' if m.required else '非必需'}</td><td>{_e(m.form)}</td><td>{m.copies}</td><td>{_e(m.source)}</td><td>{forms}</td><td>{_e(m.note)}</td></tr>"
        )
    if not rows:
        return "<p>无需提交材料</p>"
    return (
        "<table><thead><tr><th>材料名称</th><th>是否必需</th><th>材料形式</th><th>份数</th><th>来源渠道</th><th>空白表格</th><th>备注</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _process_html(item: ServiceItem) -> str:
    if not item.guide.process:
        return "<p>无</p>"
    steps = (
        f"<li><strong>{_e(s.name)}</strong>{('：' + _e(s.description)) if s.description else ''}{('（' + _e(s.time_limit) + '）') if s.time_limit else ''}</li>"
        for s in item.guide.process
    )
    return "<ol>" + "".join(steps) + "</ol>"


def _summary(item: ServiceItem) -> str:
    text = f"{ITEM_TYPES[item.item_type]}事项，实施主体：{item.department}；承诺办结时限：{item.guide.promised_time_limit or '无'}；" + (
        "可网上办理。" if item.guide.online_url else "窗口办理。"
    )
    return text[:SUMMARY_LENGTH]


def to_request(data: ServiceItemChangedData, *, today=None) -> tuple[PublishRequestData, dict | None]:
    """The publish request (and service guide) an item's change amounts to. Raises ValidationError."""
    today = today or datetime.now(timezone.utc).date()
    if data.revoked:
        return (
            PublishRequestData(
                source_ref=data.implementation_code,
                actor=data.actor,
                placements=list(data.placements),
                title=(data.title or data.implementation_code)[:200],
                formed_at=today,
                withdraw="withdrawn",
                explanation=f"该事项已在政务服务平台取消或停止实施（实施编码 {data.implementation_code}），本页不再提供办事指南。",
            ),
            None,
        )
    item = data.item
    assert item is not None  # the contract guarantees it for a change that is not a revocation
    formed = (data.platform_updated_at or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
    attachments = [Attachment(name=f"{m.name}（空白表格）"[:200], url=str(m.blank_form_url)) for m in item.guide.materials if m.blank_form_url is not None][:50]
    request = PublishRequestData(
        source_ref=data.implementation_code,
        actor=data.actor,
        placements=list(data.placements),
        title=item.name[:200],
        body_html=guide_html(item),
        summary=_summary(item),
        formed_at=min(formed, today),
        publishing_body=item.department[:100],
        attachments=attachments,
    )
    return request, service_guide(item)


def parse_service_item_message(raw: bytes) -> batches.InboundRequest | Outcome:
    """A well-formed bridge event as a gate request, or the rejection saying what is wrong."""
    envelope = check_envelope(raw, event_type=SERVICE_ITEM_CHANGED, source_prefix="/bridge/")
    if isinstance(envelope, Outcome):
        return envelope
    source = envelope["source"]
    try:
        data = ServiceItemChangedData.model_validate(envelope["data"])
    except ValidationError as exc:
        return _reject(_with_ref(envelope), _pydantic_errors(exc, ("data",)))
    if source != f"/bridge/{data.platform}":
        return _reject(_with_ref(envelope), [FieldError(loc=("source",), msg=f"source must be /bridge/{data.platform}", type="value_error")])
    if not data.placements:
        return _reject(
            _with_ref(envelope), [FieldError(loc=("data", "placements"), msg="a revocation carries the placements it withdraws from", type="missing")]
        )
    try:
        request, guide = to_request(data)
    except ValidationError as exc:
        return _reject(_with_ref(envelope), _pydantic_errors(exc, ("data",)))
    return _inbound(str(envelope["id"])[:200], source, request, guide)


def _with_ref(envelope: dict) -> dict:
    """Rejections name the item by its 实施编码, as CMS rejections name the CMS id."""
    raw = envelope.get("data")
    data: dict = raw if isinstance(raw, dict) else {}
    return {**envelope, "data": {"source_ref": data.get("implementation_code")}}


def handle_service_item_batch(raws: list[bytes], *, publisher: Publisher, directory: Directory) -> list[Outcome]:
    """The function the publisher's tongyuan.service-items.v1 agent calls."""
    return through_the_gate(raws, parse_service_item_message, SERVICE_ITEM_CHANGED, publisher=publisher, directory=directory)
