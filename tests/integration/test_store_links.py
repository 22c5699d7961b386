"""PostgreSQL connections notice a server host that vanished (services/common/db.py):
keepalives and tcp_user_timeout reach libpq, and a URL's own values win over ours."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from services.common.db import PG_LINK_CHECKS, create_store_engine

pytestmark = pytest.mark.skipif(not os.environ.get("TONGYUAN_TEST_PG_URL"), reason="TONGYUAN_TEST_PG_URL is not set: no PostgreSQL to connect to")


def _parameters(url) -> dict[str, str]:
    engine = create_store_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            return connection.connection.driver_connection.info.get_parameters()
    finally:
        engine.dispose()


def test_connections_carry_the_link_checks():
    url = make_url(os.environ["TONGYUAN_TEST_PG_URL"]).set(drivername="postgresql+psycopg")
    parameters = _parameters(url)
    assert {key: parameters.get(key) for key in ("keepalives", "keepalives_idle", "tcp_user_timeout", "connect_timeout")} == {
        "keepalives": "1",
        "keepalives_idle": str(PG_LINK_CHECKS["keepalives_idle"]),
        "tcp_user_timeout": str(PG_LINK_CHECKS["tcp_user_timeout"]),
        "connect_timeout": "5",
    }


def test_the_url_overrides_a_check():
    url = make_url(os.environ["TONGYUAN_TEST_PG_URL"]).set(drivername="postgresql+psycopg").update_query_dict({"keepalives_idle": "60", "connect_timeout": "3"})
    parameters = _parameters(url)
    assert parameters.get("keepalives_idle") == "60" and parameters.get("connect_timeout") == "3"
    assert parameters.get("tcp_user_timeout") == "30000"
