"""The dashboard, its drill-down, the exports and the CLI, on a small Changsha fixture."""

import io
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from openpyxl import load_workbook
from typer.testing import CliRunner

from contracts.catalog import derive_catalog, regions_of_city, standard_catalog
from contracts.events import CatalogAttributes
from services.common.db import create_store_engine
from services.common.settings import Settings
from services.supervision import routes
from services.supervision.calendar import WorkCalendar, official_calendar
from services.supervision.domain import applies_to
from services.supervision.store import SupervisionStore
from tests.factories import catalog_changed, place, published
from tests.wired import directory_of, mounted

REGIONS = {r.code: r for r in regions_of_city("4301")}
FURONG, TIANXIN, WENYI = "430102", "430103", "430102001"
AS_OF = "2022-08-31"
LATE_TITLE = "逾期公开的政策文件"


def filed(pid, region, level2, formed, published_on, title="公开信息"):
    event = published(pid, placements=[place(region, REGIONS[region].name, level2)], title=title)
    moment = datetime.combine(published_on, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=2)
    item = standard_catalog().level2(level2)
    data = event.data.model_copy(update={"formed_at": formed, "published_at": moment, "catalog": CatalogAttributes(time_limit=item.time_limit)})
    return event.model_copy(update={"data": data})


def edition_event(scope, version, when):
    event = catalog_changed(derive_catalog(standard_catalog(), scope=scope, edition="2022"), version=version)
    return event.model_copy(update={"time": when})


def fill(store: SupervisionStore) -> None:
    store.apply_catalogs(
        [
            catalog_changed(),
            edition_event(FURONG, 1, datetime(2022, 7, 20, 2, tzinfo=timezone.utc)),
            edition_event(TIANXIN, 1, datetime(2022, 8, 15, 2, tzinfo=timezone.utc)),
        ]
    )
    store.apply(
        [
            # 芙蓉区: three items; one publication late (10 working days from 6/1 end on 6/16, the
            # 端午 holiday 6/3 being off; published 8/1).
            filed("f1", FURONG, "D14-02-01", date(2022, 6, 1), date(2022, 8, 1), LATE_TITLE),
            filed("f2", FURONG, "D14-02-02", date(2022, 7, 1), date(2022, 7, 5)),
            filed("f3", FURONG, "D20-01-01", date(2022, 3, 1), date(2022, 3, 3)),
            # 天心区: one item, on time.
            filed("t1", TIANXIN, "D14-02-02", date(2022, 7, 1), date(2022, 7, 4)),
            # 文艺路街道 (a township of 芙蓉区): one item, on time.
            filed("w1", WENYI, "D14-02-02", date(2022, 7, 1), date(2022, 7, 6)),
        ]
    )


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path, kafka_bootstrap=None)


@pytest.fixture
def store(settings):
    store = SupervisionStore(create_store_engine(settings.store_url("supervision")))
    store.create()
    fill(store)
    return store


def app_for(store):
    loader = ChoiceLoader([FileSystemLoader("services/portal/templates"), FileSystemLoader("services/supervision/templates")])
    templates = Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))
    app = mounted(routes.router, supervision_store=store, templates=templates, directory=directory_of(REGIONS), today=lambda: date(2022, 8, 31))
    return TestClient(app)


@pytest.fixture
def client(store):
    return app_for(store)


def county_items():
    return [i for d in standard_catalog().domains for l1 in d.level1 for i in l1.items if applies_to(i, "county")]


def rows_of(html, caption):
    table = html[html.index(caption) :]
    table = table[: table.index("</table>")]
    return re.findall(r'<th scope="row"><a href="([^"]+)">([^<]+)</a>', table)


def test_the_dashboard_ranks_the_counties_and_the_townships(client):
    page = client.get(f"/supervision?as_of={AS_OF}")
    assert page.status_code == 200
    counties = rows_of(page.text, "区县（开发区）排名")
    assert [name for _, name in counties[:2]] == ["芙蓉区", "天心区"]  # 3 items covered, then 1
    assert len(counties) == 10
    assert rows_of(page.text, "乡镇（街道）排名")[0][1] == "文艺路街道"
    tianxin = page.text[page.text.index(">天心区</a>") :]
    assert "逾期完成</span>（2022-08-15）" in tianxin[: tianxin.index("</tr>")]  # own catalog after 07-31
    assert len(rows_of(page.text, "乡镇（街道）排名")) == 172
    # Charts are inline SVG with a text alternative; no script anywhere.
    coverage = f"{3 / len(county_items()) * 100:.1f}%"
    assert re.search(r'<svg role="img" aria-labelledby="sv-coverage-title sv-coverage-desc"', page.text)
    assert f"芙蓉区：{coverage}" in page.text
    assert "<script" not in page.text.lower()


def test_sorting_by_on_time_share_puts_the_late_unit_last_among_those_assessed(client):
    page = client.get(f"/supervision?as_of={AS_OF}&sort=on_time")
    names = [name for _, name in rows_of(page.text, "区县（开发区）排名")]
    assert names.index("天心区") < names.index("芙蓉区")


def test_drill_down_unit_domain_item(client):
    dashboard = client.get(f"/supervision?as_of={AS_OF}")
    unit_link = next(href for href, name in rows_of(dashboard.text, "区县（开发区）排名") if name == "芙蓉区").replace("&amp;", "&")
    unit = client.get(unit_link)
    assert unit.status_code == 200 and "<h1>芙蓉区</h1>" in unit.text
    assert "按期完成</span>（2022-07-20）" in unit.text  # own catalog published before 07-31
    assert LATE_TITLE in unit.text
    d14 = unit.text[unit.text.index(">社会救助</a>") :]
    assert "50.0%（1/2）" in d14[: d14.index("</tr>")]  # the domain table: f2 on time, f1 late
    domain_link = re.search(r'href="(/supervision/units/430102/D14\?[^"]+)"', unit.text).group(1).replace("&amp;", "&")
    items = client.get(domain_link)
    assert items.status_code == 200
    assert "政策法规文件" in items.text and LATE_TITLE in items.text
    # 6/1 + 10 working days = 6/16 (6/3 端午 off); published 8/1: 32 working days after 6/16.
    assert "2022-06-16" in items.text and "32天" in items.text
    # The county page also ranks its townships.
    assert rows_of(unit.text, "芙蓉区乡镇（街道）排名")[0][1] == "文艺路街道"


def test_filters_restrict_the_measures(client):
    everything = client.get(f"/supervision/units/{FURONG}?as_of={AS_OF}")
    assert "逾期1" in everything.text
    before_late = client.get(f"/supervision/units/{FURONG}?as_of={AS_OF}&from=2022-01-01&to=2022-07-31")
    assert "逾期0" in before_late.text
    social_assistance = client.get(f"/supervision/units/{FURONG}?as_of={AS_OF}&domain=D14")
    d14 = [i for i in county_items() if i.id.startswith("D14-")]
    assert f"（2/{len(d14)}项有内容）" in social_assistance.text
    earlier = client.get(f"/supervision/units/{FURONG}?as_of=2022-07-05")
    assert f"（2/{len(county_items())}项有内容）" in earlier.text  # f3 (3/3) and f2 (7/5); f1 (8/1) not yet


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("as_of=2022-02-30", ["query", "as_of"]),
        (f"as_of={AS_OF}&from=2022-08-01&to=2022-07-01", ["query", "from"]),
        (f"as_of={AS_OF}&to=2022-09-30", ["query", "to"]),
        (f"as_of={AS_OF}&domain=D99", ["query", "domain"]),
        (f"as_of={AS_OF}&domain=社会救助", ["query", "domain"]),
        (f"as_of={AS_OF}&sort=popularity", ["query", "sort"]),
        # Far outside the disclosure regime: working-day arithmetic overflowed on these (a 500).
        ("as_of=0001-01-01", ["query", "as_of"]),
        ("as_of=9999-12-31", ["query", "as_of"]),
        (f"as_of={AS_OF}&from=0001-01-01", ["query", "from"]),
    ],
)
def test_bad_filters_get_field_level_422(client, query, loc):
    response = client.get(f"/supervision?{query}")
    assert response.status_code == 422
    assert loc in [e["loc"] for e in response.json()["detail"]]


def test_unknown_units_are_404(client):
    assert client.get("/supervision/units/430199").status_code == 404
    assert client.get("/supervision/units/4301").status_code == 404  # the city supervises, it is not a unit
    assert client.get("/supervision?region=999999").status_code == 404


def test_the_xlsx_report_is_the_tongbao_table(client):
    response = client.get(f"/supervision/report.xlsx?region={FURONG}&as_of={AS_OF}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/vnd.openxmlformats")
    workbook = load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames == ["通报", "未覆盖事项", "逾期事项", "长期未更新", "目录差异", "时限无法解析"]
    sheet = workbook["通报"]
    assert sheet["A1"].value == "芙蓉区基层政务公开工作情况通报表（截至2022年8月31日）"
    merged = {str(r) for r in sheet.merged_cells.ranges}
    assert any(r.startswith("A1:") for r in merged) and "E3:I3" in merged  # 目录完整度 over its five columns
    header = [below or above for above, below in zip((c.value for c in sheet[3]), (c.value for c in sheet[4]), strict=True)]
    rows = {r[1]: dict(zip(header, r, strict=False)) for r in sheet.iter_rows(min_row=5, values_only=True) if r[1]}
    furong = rows["芙蓉区"]
    assert furong["已覆盖"] == 3 and furong["适用事项"] == len(county_items())
    assert furong["覆盖率"] == pytest.approx(3 / len(county_items()))
    assert (furong["按时"], furong["逾期"]) == (2, 1)
    assert "政策法规文件（1条，最多逾期32天）" in furong["逾期事项"]
    assert furong["目录编制并公开（07-31前）"] == "按期完成（2022-07-20）"
    assert rows["文艺路街道"]["排名"] == 1 and rows["文艺路街道"]["所属区县"] == "芙蓉区" and rows["文艺路街道"]["已覆盖"] == 1
    assert len(rows) == 1 + len([r for r in REGIONS.values() if r.parent_code == FURONG])  # the county and its townships
    late = list(workbook["逾期事项"].iter_rows(min_row=2, values_only=True))
    assert late == [("芙蓉区", None, "社会救助", "最低生活保障", "政策法规文件", 1, 32, "10个工作日")]
    missing = [r for r in workbook["未覆盖事项"].iter_rows(min_row=2, values_only=True) if r[0] == "芙蓉区"]
    assert len(missing) == len(county_items()) - 3


def test_the_printable_report(client):
    response = client.get(f"/supervision/report?as_of={AS_OF}")
    assert response.status_code == 200
    assert "@page { size: A4 landscape" in response.text
    assert "长沙市基层政务公开工作情况通报表（截至2022年8月31日）" in response.text
    assert all(r.name in response.text for r in REGIONS.values() if r.level != "city")


def test_publications_the_calendar_cannot_assess_raise_a_banner(settings, tmp_path):
    official = official_calendar()
    older = WorkCalendar(official.is_workday, official.years[0], 2021, source="chinese-calendar (older)")
    store = SupervisionStore(create_store_engine(settings.store_url("supervision")), calendar=older)
    store.create()
    fill(store)
    page = app_for(store).get(f"/supervision?as_of={AS_OF}")
    assert 'role="alert"' in page.text and "有 5 条公开信息无法判断是否按时" in page.text


def test_the_cli_writes_the_report(settings, store, tmp_path, monkeypatch, request):
    from services.cli import cli as app
    from services.common.settings import get_settings

    # The composition root's stores under this test's var dir; its regions are Changsha's (REGIONS).
    monkeypatch.setenv("TONGYUAN_VAR_DIR", str(settings.var_dir))
    monkeypatch.delenv("TONGYUAN_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    out = tmp_path / "out.xlsx"
    html = tmp_path / "out.html"
    result = CliRunner().invoke(app, ["report", "--region", FURONG, "--as-of", AS_OF, "--xlsx", str(out), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "芙蓉区" in result.output and out.exists() and html.exists()
    assert load_workbook(out, read_only=True)["通报"]["A1"].value.startswith("芙蓉区")
    bad = CliRunner().invoke(app, ["report", "--region", "4301", "--as-of", "2022-08-31", "--from", "2022-09-01"])
    assert bad.exit_code == 2
