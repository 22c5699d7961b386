"""/healthz and /readyz are not green while the publisher owes a broker that lost its log a
re-emission; the check clears once every row is acknowledged again."""

from fastapi.testclient import TestClient

from services.common.settings import Settings
from services.portal.app import create_app
from services.publisher.app import bootstrap


def test_a_pending_reemission_keeps_health_red_until_every_row_is_acked_again(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None)
    client = TestClient(create_app(settings))
    publisher = bootstrap(settings, load_reference=False)
    assert client.get("/healthz").json()["checks"]["broker:log"] == {"up": True, "reemission_pending": False}

    publisher.request_reemission()  # `tongyuan up` restarted the broker
    for path in ("/healthz", "/readyz"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.json()["checks"]["broker:log"] == {"up": False, "reemission_pending": True}

    again = publisher.reemit_unapplied({"tongyuan.publications.v1": "new-id"})  # the relay takes it on
    rows = publisher.unsent(10_000)
    assert again == 0 and rows, "the reference catalogs' editions were never sent: they go out anyway"
    assert client.get("/healthz").json()["checks"]["broker:log"]["up"] is False
    publisher.mark_sent([row[0] for row in rows])
    assert client.get("/healthz").json()["checks"]["broker:log"] == {"up": True, "reemission_pending": False}
