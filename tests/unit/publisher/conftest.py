import pytest
from fastapi.testclient import TestClient

from services.common.settings import Settings
from services.portal.app import create_app


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path, kafka_bootstrap=None)


@pytest.fixture
def portal(settings):
    """The whole portal, no broker."""
    return TestClient(create_app(settings))
