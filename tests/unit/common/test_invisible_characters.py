"""Titles and attachment names show what they are: invisible format characters (bidi controls,
zero-width spaces, BOMs …) leave titles at the gate, and a bidi control in an attachment name
is refused with its field — over HTTP, and on the inbound lane the CMS topic, the bridge and
the migration share."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from contracts.events import Attachment, PublishRequestData, SourceRef
from services.common.auth import build_verifier
from services.common.db import create_store_engine
from services.common.settings import Settings
from services.portal.app import create_app
from services.publisher.gate import batches, domain
from services.publisher.gate.domain import Rejected, without_invisible_format
from services.publisher.store import Publisher
from tests.conftest import EDITOR, draft

NOW = datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc)
LYING_NAME = "申请表\u202excod.exe"  # shows as 申请表exe.docx
PDF = "https://example.gov.cn/a.pdf"


@pytest.fixture
def build(directory):
    def build(**overrides):
        return domain.build_publication(
            draft(**overrides),
            publication_id="p1",
            version=1,
            index_number="430102001/2026-00001",
            source=SourceRef(source="/http"),
            directory=directory,
            now=NOW,
        )

    return build


@pytest.mark.parametrize(
    "hidden",
    [
        "\u202e",
        "\u202d",
        "\u202a",
        "\u202b",
        "\u202c",
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",
        "\u200b",
        "\u200c",
        "\u200d",
        "\u200e",
        "\u200f",
        "\ufeff",
        "\u2060",
        "\u00ad",
        "\U000e0041",
    ],
)
def test_a_title_loses_invisible_format_characters(build, hidden):
    assert build(title=f"关于低保{hidden}标准调整的公告{hidden}").title == "关于低保标准调整的公告"


@pytest.mark.parametrize(
    "title",
    [
        "关于2026年最低生活保障标准调整的公告",
        "长沙县　政务公开（第一期）",  # an ideographic space is a space, not a format character
        "ئۇيغۇر\u200cتىلى ئۇقتۇرۇشى",  # a joiner inside Uyghur's Arabic script shapes its letters
        "ᠮᠣᠩᠭ\u180eᠠ ᠪᠢᠴᠢᠭ",  # the Mongolian vowel separator between Mongolian letters
        "क्\u200dष संख्या",  # a joiner inside Devanagari
        "\u0600١٢٣ 公告",  # an Arabic number sign is format but visible
        "Notice — café ½ №5",
    ],
)
def test_legitimate_titles_are_kept_as_they_are(build, title):
    assert build(title=title).title == title
    assert without_invisible_format(title) == title


def test_joiners_between_han_characters_are_hidden_and_go():
    assert without_invisible_format("低\u200d保\u200c公告") == "低保公告"


def test_a_title_of_invisible_characters_only_is_refused(build):
    with pytest.raises(Rejected) as refused:
        build(title="\u200b\u202e\ufeff")
    (error,) = refused.value.errors
    assert error.loc == ("title",) and "不可见" in error.msg


def test_an_attachment_name_with_a_bidi_control_is_refused_with_its_field(build):
    with pytest.raises(Rejected) as refused:
        build(attachments=[Attachment(name="正常附件.pdf", url=PDF), Attachment(name=LYING_NAME, url="https://example.gov.cn/b.exe")])
    (error,) = refused.value.errors
    assert error.loc == ("attachments", 1, "name") and error.type == "value.bidi_control"
    assert "U+202E" in error.msg and "文件类型" in error.msg


def test_other_invisible_characters_leave_an_attachment_name(build):
    data = build(attachments=[Attachment(name="\ufeff申请\u200b表.pdf", url=PDF), Attachment(name="办事指南.pdf", url=PDF)])
    assert [a.name for a in data.attachments] == ["申请表.pdf", "办事指南.pdf"]


def test_every_text_problem_is_reported_at_once(build):
    with pytest.raises(Rejected) as refused:
        build(title="\u200b", attachments=[Attachment(name="a\u2067b.pdf", url=PDF), Attachment(name="\u200b", url=PDF)])
    assert [e.loc for e in refused.value.errors] == [("title",), ("attachments", 0, "name"), ("attachments", 1, "name")]


@pytest.mark.parametrize("source", ["/cms/furong", "/bridge/hunan", "/migration/changsha-county"])
def test_the_inbound_lane_strips_titles_and_refuses_lying_names(tmp_path, directory, source):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()

    def request(ref, **overrides):
        return PublishRequestData.model_validate(dict(source_ref=ref, actor=EDITOR.model_dump(), **draft(**overrides).model_dump()))

    batch = [
        batches.InboundRequest("e1", source, request("a", title="低保\u202e公告")),
        batches.InboundRequest("e2", source, request("b", attachments=[Attachment(name=LYING_NAME, url=PDF)])),
    ]
    accepted, refused = batches.accept_cms_batch(batch, publisher=publisher, directory=directory)
    with publisher.transaction() as store:
        assert store.get(accepted.publication_id).document.title == "低保公告"
    assert isinstance(refused, Rejected) and refused.errors[0].loc == ("attachments", 0, "name")


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(settings)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {local.mint(EDITOR, audience=settings.auth_audience)}"})


def body(**overrides):
    values = {
        "placements": [{"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": "低保公告",
        "formed_at": "2026-03-02",
    }
    return values | overrides


def test_over_http_a_lying_attachment_name_is_a_422_with_the_field_path(client):
    response = client.post("/v1/publications", json=body(attachments=[{"name": LYING_NAME, "url": PDF}]))
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "attachments", 0, "name"] and "U+202E" in problem["msg"]


def test_over_http_a_title_loses_its_invisible_characters(client):
    response = client.post("/v1/publications", json=body(title="\u200b低保\u2066公告\u2069", attachments=[{"name": "申请\u200b表.pdf", "url": PDF}]))
    assert response.status_code == 202, response.text
    stored = client.get(f"/v1/publications/{response.json()['publication_id']}").json()["publication"]
    assert stored["title"] == "低保公告" and stored["attachments"][0]["name"] == "申请表.pdf"
