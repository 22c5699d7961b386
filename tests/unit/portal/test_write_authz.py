"""Every write the portal serves needs the right role, and the right region where it is regional.

The routes come from the real portal's OpenAPI document, not from a list here: a new write route
is walked as soon as it is mounted, and fails until it declares its role (services.common.auth.
declared) and enforces it, or is listed below as authenticated another way, with the reason.
"""

from __future__ import annotations

import time

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from contracts.identity import Principal
from services.bridge.webhooks import sign
from services.common.auth import REGION_EXTENSION, ROLE_EXTENSION, build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from tests.conftest import COUNTY, OTHER_COUNTY, TOWNSHIP

READS = {"get", "head", "options"}
ROLES = ("editor", "approver", "admin")
WEBHOOK_SECRET = "webhook-secret-for-tests"

# Writes that carry no bearer token, and how they are authenticated instead.
SIGNED = {
    (
        "post",
        "/bridge/webhooks/{platform}",
    ): "the service platform signs each notice with HMAC-SHA256 over timestamp, nonce and body (bridge.webhooks.verify); it holds no token of ours",
}

# A valid value for each path parameter a write route takes (a new name fails the walk until
# it is given one here).
PATH_VALUES = {"publication_id": "p-does-not-exist", "scope": COUNTY, "edition": "2099", "platform": "hunan-zwfw"}


def draft(region: str) -> dict:
    return {
        "placements": [{"region_code": region, "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": "关于2026年最低生活保障标准调整的公告",
        "body_html": "<p>根据有关规定，我区城乡低保标准调整如下。</p>",
        "formed_at": "2026-03-02",
        "published_at": "2026-03-05T09:00:00+00:00",
    }


@pytest.fixture
def portal(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGYUAN_BRIDGE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(settings)

    def bearer(principal: Principal) -> dict:
        return {"Authorization": f"Bearer {local.mint(principal, audience=settings.auth_audience)}"}

    return TestClient(create_app(settings)), bearer


def writes(app) -> list[tuple[str, str, dict]]:
    return [(method, path, operation) for path, operations in app.openapi()["paths"].items() for method, operation in operations.items() if method not in READS]


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"{path}: give its path parameter a value in PATH_VALUES"
    return path


def call(client, method: str, path: str, headers: dict | None = None, json: object = None):
    return client.request(method, concrete(path), json={} if json is None else json, headers=headers or {})


def test_every_write_route_is_in_the_openapi_document(portal):
    """A route hidden from the document (include_in_schema=False) would escape the walk."""
    client, _ = portal
    documented = {(m, p) for m, p, _ in writes(client.app)}
    routes = {(m.lower(), r.path) for r in client.app.routes if isinstance(r, APIRoute) for m in r.methods if m.lower() not in READS}
    assert routes <= documented
    assert len(documented) >= 9  # publish ×3, catalog ×4, bridge mapping and webhook


def test_every_write_needs_a_token_with_the_declared_role(portal):
    client, bearer = portal
    walked = []
    for method, path, operation in writes(client.app):
        if (method, path) in SIGNED:
            continue
        assert operation.get("security") == [{"HTTPBearer": []}], f"{method.upper()} {path}: takes no bearer token and is not in SIGNED"
        role = operation.get(ROLE_EXTENSION)
        assert role in ROLES, f"{method.upper()} {path}: declare the role it needs (services.common.auth.declared)"
        if role != "admin":
            # Everyone but an administrator acts for some regions only.
            assert operation.get(REGION_EXTENSION), f"{method.upper()} {path}: a {role}'s write must say where its region comes from"
        everywhere = (COUNTY, OTHER_COUNTY, "43")
        others = tuple(r for r in ROLES if r not in (role, "admin"))

        anonymous = call(client, method, path)
        assert anonymous.status_code == 401, f"{method.upper()} {path} without a token: {anonymous.status_code}"
        forged = bearer(Principal(user="x", roles=ROLES))["Authorization"][:-6] + "AAAAAA"
        assert call(client, method, path, {"Authorization": forged}).status_code == 401
        for roles in ((), others):
            wrong = call(client, method, path, bearer(Principal(user="wrong-role", roles=roles, regions=everywhere)))
            assert wrong.status_code == 403, f"{method.upper()} {path} with roles {roles}: {wrong.status_code} {wrong.text[:200]}"
        right = call(client, method, path, bearer(Principal(user="right-role", roles=(role,), regions=(COUNTY,))))
        assert right.status_code not in (401, 403), f"{method.upper()} {path} as {role}: {right.status_code} {right.text[:200]}"
        walked.append((method, path))
    assert len(walked) >= 8


def test_regional_writes_refuse_a_region_the_editor_does_not_hold(portal):
    """Routes that declare a region are tried by an editor of the neighbouring county."""
    client, bearer = portal
    admin = bearer(Principal(user="office", roles=("admin",)))
    stranger = bearer(Principal(user="tianxin-clerk", roles=("editor",), regions=(OTHER_COUNTY,)))

    def existing() -> str:
        answer = client.post("/v1/publications", json=draft(TOWNSHIP), headers=admin)
        assert answer.status_code == 202, answer.text
        return answer.json()["publication_id"]

    # Where the region comes from → (a request of the stranger's, the location the 403 names).
    schemas = {
        "PublicationDraft": lambda: draft(TOWNSHIP),
        "Revision": lambda: {**draft(OTHER_COUNTY), "version": 1},  # moving another unit's item into one's own column
        "WithdrawalRequest": lambda: {"type": "withdrawn", "explanation": "错发"},
    }
    tried = 0
    for method, path, operation in writes(client.app):
        source = operation.get(REGION_EXTENSION)
        if not source:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
        assert schema in schemas, f"{method.upper()} {path}: give a sample {schema} body for the region walk"
        assert source in ("body.placements", "publication"), f"{method.upper()} {path}: unknown region source {source}"
        target = path.replace("{publication_id}", existing()) if source == "publication" else path
        before = client.get("/v1/publications/" + target.split("/")[3]).json() if source == "publication" else None
        refused = client.request(method, target, json=schemas[schema](), headers=stranger)
        assert refused.status_code == 403, f"{method.upper()} {path} from another county: {refused.status_code} {refused.text[:200]}"
        named = refused.json()["detail"][0]["loc"]
        assert named[:2] == (["body", "placements"] if source == "body.placements" else ["body", "publication"]), named
        if before is not None:
            assert client.get("/v1/publications/" + target.split("/")[3]).json() == before  # nothing changed
        tried += 1
    assert tried >= 3


@pytest.mark.parametrize(("method", "path"), sorted(SIGNED))
def test_signed_writes_refuse_a_missing_or_forged_signature(portal, method, path):
    client, bearer = portal
    assert method == "post" and path == "/bridge/webhooks/{platform}"  # the only one: extend when a new kind is added
    body = b'{"event":"item.updated","implementation_code":"11430102MB1234567X4000101000001","version":2}'
    now = int(time.time())
    missing = client.post(concrete(path), content=body)
    assert missing.status_code == 401
    forged = client.post(concrete(path), content=body, headers=sign(body, "a guessed secret", timestamp=now, nonce="n-forged0001"))
    assert forged.status_code == 401
    # A bearer token, even an administrator's, is no signature.
    with_token = client.post(concrete(path), content=body, headers=bearer(Principal(user="office", roles=("admin",))))
    assert with_token.status_code == 401
