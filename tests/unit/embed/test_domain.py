"""The embed consumer's pure rules (versions: tests/unit/common/test_projection.py): what counts as 重大民生信息, scopes, and portal checks."""

import pytest

from contracts.catalog import DOMAIN_NAMES, regions_of_city
from services.embed.domain import (
    DEFAULT_MAJOR_DOMAINS,
    MajorRules,
    Portal,
    RegistryError,
    check_rule_target,
    excerpt,
    normalise_https_url,
    scopes_of,
    validate_portals,
)
from tests.factories import place

KNOWN = {r.code: r for r in regions_of_city("4301")}


def test_the_default_domains_are_the_livelihood_domains_by_their_catalog_codes():
    names = {f"D{i:02d}": name for i, (name, _) in enumerate(DOMAIN_NAMES, start=1)}
    assert sorted(names[code] for code in DEFAULT_MAJOR_DOMAINS) == sorted(
        ["救灾", "社会救助", "养老服务", "涉农补贴", "就业", "社会保险", "义务教育", "卫生健康", "保障性住房"]
    )


def test_the_most_specific_rule_wins_and_a_publications_own_flag_beats_every_rule():
    rules = MajorRules({"D14": True, "D14-02": False, "D14-02-03": True, "D05-01-01": True})
    assert rules.counts(place(level2="D14-01-01"))
    assert not rules.counts(place(level2="D14-02-02"))
    assert rules.counts(place(level2="D14-02-03"))
    assert rules.counts(place(level2="D05-01-01")) and not rules.counts(place(level2="D05-01-02"))
    assert not rules.counts(place(level2="D14-01-01"), flag=False)
    assert rules.counts(place(level2="D01-01-01"), flag=True)
    assert rules.major_domains() == ["D05", "D14"]


@pytest.mark.parametrize("target", ["D33", "D14-2", "X14", "D14-02-03-01", ""])
def test_rule_targets_must_be_catalog_ids(target):
    with pytest.raises(ValueError):
        check_rule_target(target)


def test_rule_targets_are_normalised():
    assert check_rule_target(" d14-02 ") == "D14-02"


def test_scopes_are_a_region_and_its_ancestors_by_code_prefix():
    assert scopes_of("430102001") == ["4301", "430102", "430102001"]
    assert scopes_of("430102") == ["4301", "430102"]
    assert scopes_of("4301GX") == ["4301", "4301GX"]


def test_excerpt_is_plain_text_from_the_body_when_there_is_no_summary():
    assert excerpt(None, "<p>城乡&amp;低保<script>alert(1)</script>标准</p>") == "城乡&低保标准"
    assert excerpt("摘要", "<p>正文</p>") == "摘要"
    assert len(excerpt(None, "<p>" + "字" * 500 + "</p>", limit=20)) == 20


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://www.example.gov.cn/", "https"),
        ("https://", "host"),
        ("https://localhost/", "host"),
        ("https://user:pw@www.example.gov.cn/", "password"),
        ("https://www.example .gov.cn/", "spaces"),
        ("javascript:alert(1)", "https"),
        ("www.example.gov.cn", "https"),
        ("https://www.example.gov.cn:99999/", "well-formed"),
        ("https://-bad-.gov.cn/", "host"),
        ("", "empty"),
    ],
)
def test_portal_addresses_must_be_well_formed_https(url, reason):
    with pytest.raises(ValueError, match=reason):
        normalise_https_url(url)


def test_portal_addresses_are_normalised():
    assert normalise_https_url("HTTPS://WWW.Example.gov.cn") == "https://www.example.gov.cn/"
    assert normalise_https_url("https://www.example.gov.cn:443/zwgk/#top") == "https://www.example.gov.cn/zwgk/"
    assert normalise_https_url("https://政府.example.cn/a") == "https://xn--mxtq1m.example.cn/a"


def row(where, code, n=1):
    return (where, code, f"https://www.example.gov.cn/t{n}/", f"https://www.example.gov.cn/t{n}/zwgk/")


def test_every_problem_is_reported_and_nothing_is_accepted():
    registered = {"430102002": Portal("430102002", "https://www.example.gov.cn/t9/", "https://www.example.gov.cn/t9/zwgk/")}
    rows = [
        row("r1", "430102001", 1),
        row("r2", "999999999", 2),
        row("r3", "430102", 3),
        row("r4", "430102001", 4),
        row("r5", "430102002", 5),
        ("r6", "430102003", "http://www.example.gov.cn/t6/", "https://www.example.gov.cn/t6/zwgk/"),
        row("r7", "430102008", 9),
        row("r8", "430102009", 1),
    ]
    with pytest.raises(RegistryError) as caught:
        validate_portals(rows, known=KNOWN, registered=registered)
    problems = {p.where: p.message for p in caught.value.problems}
    assert set(problems) == {"r2", "r3", "r4", "r5", "r6", "r7", "r8"}
    assert "not a known region" in problems["r2"]
    assert "not a township" in problems["r3"]
    assert "appears twice" in problems["r4"] and "r1" in problems["r4"]
    assert "already has a portal" in problems["r5"]
    assert "https" in problems["r6"]
    assert "430102002" in problems["r7"] and "registry" in problems["r7"]
    assert "430102001" in problems["r8"] and "r1" in problems["r8"]


def test_replacing_an_entry_frees_its_addresses_and_codes_passed_by_the_caller_are_known():
    registered = {"430102002": Portal("430102002", "https://www.example.gov.cn/t9/", "https://www.example.gov.cn/t9/zwgk/")}
    accepted = validate_portals(
        [row("r1", "430102002", 9), row("r2", "X00000001", 2)], known={**KNOWN, "X00000001": None}, registered=registered, replacing={"430102002"}
    )
    assert [p.region_code for p in accepted] == ["430102002", "X00000001"]
