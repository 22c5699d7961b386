"""Schemathesis against the portal's OpenAPI document: a bounded, deterministic number of examples
per operation, valid and invalid, sent anonymously and as an administrator. Every answer must be
one the document promises — its status code, media type, headers and body schema — invalid input
must be refused and valid input accepted, and nothing may produce a server error (5xx)."""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from services.column.app import build_store
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from tests.conftest import ADMIN, COUNTY, TOWNSHIP, draft
from tests.factories import catalog_changed

EXAMPLES_PER_OPERATION = 12
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
)

# (operation, check) → why that check does not apply to that operation. Nothing is excluded
# for every operation.
ACROSS_PARAMETERS = "rules across parameters (from ≤ to ≤ as_of, an item within its domain, a result window) that OpenAPI cannot express"
NOT_A_WORKBOOK = "valid bytes for the schema are not an .xlsx workbook (a zip of sheets); only a real one is accepted"
THE_GATE = "the gate checks placements against the region directory and the catalog in force, which a schema cannot list"
NOT_APPLICABLE = {
    ("GET /healthz", "not_a_server_error"): "503 by design: no broker runs in unit tests",
    ("GET /readyz", "not_a_server_error"): "503 by design: no broker runs in unit tests",
    ("GET /search", "positive_data_acceptance"): ACROSS_PARAMETERS,
    ("GET /v1/search", "positive_data_acceptance"): ACROSS_PARAMETERS,
    ("GET /supervision", "positive_data_acceptance"): ACROSS_PARAMETERS,
    ("GET /supervision/report", "positive_data_acceptance"): ACROSS_PARAMETERS,
    ("GET /supervision/report.xlsx", "positive_data_acceptance"): ACROSS_PARAMETERS,
    ("POST /v1/publications", "positive_data_acceptance"): THE_GATE,
    ("POST /v1/publications/{publication_id}", "positive_data_acceptance"): THE_GATE,
    ("PUT /v1/bridge/mapping.xlsx", "positive_data_acceptance"): NOT_A_WORKBOOK,
    ("PUT /v1/catalogs/{scope}/{edition}/xlsx", "positive_data_acceptance"): NOT_A_WORKBOOK,
}


def conformance_failures(app, identities: dict[str, dict], examples: int = EXAMPLES_PER_OPERATION) -> list[tuple[str, str, str, str, str]]:
    """(check, operation, identity, what happened, the body's start) for every check that failed, over a fixed
    number of derandomised examples per operation, mode and identity."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # publish, catalog, search, embed, bridge …
    assert {label for label, _ in NOT_APPLICABLE} <= {operation.label for operation in operations}  # no stale exclusion
    failures: list[tuple[str, str, str, str, str]] = []
    for operation in operations:
        checks = [check for check in CHECKS if (operation.label, check.__name__) not in NOT_APPLICABLE]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for identity, headers in identities.items():
                _exercise(operation, mode, identity, headers, checks, examples, failures)
    return failures


def _exercise(operation, mode, identity, headers, checks, examples, failures) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        response = case.call(headers=headers)
        for check in checks:
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    seen = f"{mode.value} → {response.status_code}: {failure.title}"
                    failures.append((check.__name__, operation.label, identity, seen, response.content[:160].decode(errors="replace")))

    try:
        call()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid ones


@pytest.fixture
def portal(tmp_path):
    config = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(config)
    app = create_app(config)
    build_store(config).apply_catalogs([catalog_changed()])  # as the column consumer would have
    admin = {"Authorization": f"Bearer {local.mint(ADMIN, audience=config.auth_audience)}"}
    return app, {"anonymous": {}, "admin": admin}


# A fixed number of examples, CPU-bound: on a loaded machine it takes several times longer, and the
# suite's 300 s guard is against hangs, not a budget for this much work.
@pytest.mark.timeout(3600)
def test_every_answer_conforms_to_the_openapi_document(portal):
    app, identities = portal
    failures = conformance_failures(app, identities)
    per_check = Counter(check for check, *_ in failures)
    # One line per check, operation, identity and outcome, with one of its bodies.
    distinct = {tuple(f[:4]): f[4] for f in failures}
    report = "\n".join(" | ".join((*key, body)) for key, body in sorted(distinct.items()))
    assert failures == [], f"{len(failures)} conformance failures {dict(per_check)}:\n{report}"


# Requests that reach real answers (random examples mostly meet 404s): each with the status it
# gets, in order, as an administrator unless marked anonymous. Their answers must conform too.
PUBLICATION = "the id the publish answer gave"
REAL_REQUESTS = [
    ("GET", "/v1/regions/{region_code}/catalog", {"region_code": COUNTY}, None, None, 200),
    ("GET", "/v1/regions/{region_code}/catalog/{domain}", {"region_code": COUNTY, "domain": "D14"}, None, None, 200),
    ("GET", "/v1/regions/{region_code}/catalog/{domain}/{level1_id}", {"region_code": COUNTY, "domain": "D14", "level1_id": "D14-02"}, None, None, 200),
    ("GET", "/v1/catalogs", {}, None, None, 200),
    ("GET", "/v1/catalogs/{scope}/{edition}", {"scope": "standard", "edition": "2022"}, None, None, 200),
    ("GET", "/v1/catalogs/{scope}/{edition}/xlsx", {"scope": "standard", "edition": "2022"}, None, None, 200),
    ("GET", "/v1/catalogs/diff", {}, {"a": "standard@2021", "b": "standard@2022"}, None, 200),
    ("POST", "/v1/catalogs/{scope}/{edition}/derive", {"scope": COUNTY, "edition": "2023"}, None, {}, 201),
    ("POST", "/v1/catalogs/{scope}/{edition}/derive", {"scope": COUNTY, "edition": "2023"}, None, {}, 409),
    ("PATCH", "/v1/catalogs/{scope}/{edition}", {"scope": COUNTY, "edition": "2023"}, None, {"rename": {"D14-02": "最低生活保障（城乡）"}}, 200),
    ("POST", "/v1/catalogs/{scope}/{edition}/publish", {"scope": COUNTY, "edition": "2023"}, None, None, 200),
    ("POST", "/v1/publications", {}, None, "draft", 202),
    ("GET", "/v1/publications/{publication_id}", {"publication_id": PUBLICATION}, None, None, 200),
    ("POST", "/v1/publications/{publication_id}", {"publication_id": PUBLICATION}, None, "revision", 202),
    ("POST", "/v1/publications/{publication_id}", {"publication_id": PUBLICATION}, None, "revision", 409),
    ("POST", "/v1/publications/{publication_id}/withdraw", {"publication_id": PUBLICATION}, None, {"type": "gone", "explanation": "信息已过期"}, 202),
    ("GET", "/v1/publications/{publication_id}", {"publication_id": PUBLICATION}, None, "anonymous", 410),
    ("GET", "/columns", {}, None, None, 200),
    ("GET", "/columns/{region_code}", {"region_code": COUNTY}, None, None, 200),
    ("GET", "/columns/{region_code}/{domain_code}", {"region_code": COUNTY, "domain_code": "D14"}, None, None, 200),
    ("GET", "/columns/{region_code}/{domain_code}/{item_id}", {"region_code": COUNTY, "domain_code": "D14", "item_id": "D14-02"}, None, None, 200),
    ("GET", "/catalog/{region_code}", {"region_code": COUNTY}, None, None, 200),
    ("GET", "/publications/{publication_id}", {"publication_id": PUBLICATION}, None, None, 404),
    ("GET", "/search", {}, {"q": "低保"}, None, 200),
    ("GET", "/v1/search", {}, {"q": "低保"}, None, 200),
    ("GET", "/embed/{region_code}", {"region_code": TOWNSHIP}, None, None, 200),
    ("GET", "/embed/{region_code}/fragment", {"region_code": TOWNSHIP}, {"h": 3}, None, 200),
    ("GET", "/embed/{region_code}/atom.xml", {"region_code": TOWNSHIP}, None, None, 200),
    ("GET", "/embed/{region_code}/feed.json", {"region_code": COUNTY}, None, None, 200),
    ("GET", "/embed/{region_code}/{domain_code}/atom.xml", {"region_code": TOWNSHIP, "domain_code": "D14"}, None, None, 200),
    ("GET", "/embed/{region_code}/{domain_code}/feed.json", {"region_code": TOWNSHIP, "domain_code": "D14"}, None, None, 200),
    ("GET", "/embed/{region_code}/code", {"region_code": TOWNSHIP}, None, None, 200),
    ("GET", "/supervision", {}, None, None, 200),
    ("GET", "/supervision/units/{unit_code}", {"unit_code": COUNTY}, None, None, 200),
    ("GET", "/supervision/units/{unit_code}/{domain_code}", {"unit_code": COUNTY, "domain_code": "D14"}, None, None, 200),
    ("GET", "/supervision/report", {}, None, None, 200),
    ("GET", "/supervision/report.xlsx", {}, None, None, 200),
    ("GET", "/v1/bridge/unmapped", {}, None, None, 200),
    ("GET", "/bridge/unmapped", {}, None, None, 200),
    ("GET", "/v1/bridge/mapping.xlsx", {}, None, None, 200),
    ("GET", "/healthz", {}, None, None, 503),
]
# Checks of one answer; valid/invalid data acceptance needs generated examples.
ANSWER_CHECKS = [check for check in CHECKS if check not in (negative_data_rejection, positive_data_acceptance)]


def test_real_answers_conform_to_the_openapi_document(portal):
    app, identities = portal
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    bodies = {
        "draft": draft().model_dump(mode="json"),
        "revision": {**draft(title="关于2026年最低生活保障标准调整的公告（修订）").model_dump(mode="json"), "version": 1},
    }
    answered, failures, published = [], [], None
    for method, path, path_parameters, query, body, _ in REAL_REQUESTS:
        path_parameters = {name: published if value == PUBLICATION else value for name, value in path_parameters.items()}
        operation = schema[path][method]
        headers = identities["anonymous" if body == "anonymous" else "admin"]
        payload = bodies.get(body) if isinstance(body, str) else body
        json_body = {} if payload is None else {"body": payload, "media_type": "application/json"}
        case = operation.Case(path_parameters=path_parameters, query=query, **json_body)
        response = case.call(headers=headers)
        answered.append((method, path, response.status_code))
        if (method, path, response.status_code) == ("POST", "/v1/publications", 202):
            published = response.json()["publication_id"]
        for check in ANSWER_CHECKS:
            if (operation.label, check.__name__) in NOT_APPLICABLE:
                continue
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except FailureGroup as group:
                failures += [
                    (check.__name__, operation.label, response.status_code, failure.title, response.content[:160].decode(errors="replace"))
                    for failure in group.exceptions
                ]
    assert answered == [(method, path, expected) for method, path, *_, expected in REAL_REQUESTS]
    per_check = Counter(check for check, *_ in failures)
    assert failures == [], f"{len(failures)} conformance failures {dict(per_check)}:\n" + "\n".join(" | ".join(map(str, f)) for f in failures)
