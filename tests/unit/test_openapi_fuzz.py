"""Schemathesis against the portal's OpenAPI document: bounded examples per operation, and
no input may produce a server error (5xx)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.column.app import build_store
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from tests.conftest import ADMIN
from tests.factories import catalog_changed

EXAMPLES_PER_OPERATION = 12


# A fixed number of examples, CPU-bound: on a loaded machine it takes several times longer, and the
# suite's 300 s guard is against hangs, not a budget for this much work.
@pytest.mark.timeout(1800)
def test_no_input_causes_a_server_error(tmp_path):
    config = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    _, local = build_verifier(config)
    headers = {"Authorization": f"Bearer {local.mint(ADMIN, audience=config.auth_audience)}"}
    app = create_app(config)
    build_store(config).apply_catalogs([catalog_changed()])  # as the column consumer would have
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # publish, catalog, search, embed, bridge …
    server_errors = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(headers=headers)
            # /healthz and /readyz answer 503 by design here (no broker runs in unit tests).
            if response.status_code >= 500 and case.path not in ("/healthz", "/readyz"):
                server_errors.append(f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:200]}")

        call()
    assert server_errors == []
