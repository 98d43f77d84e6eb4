"""The suite's memory stays flat: an app a test built is freed when the test ends (see
tests.fixtures.memory for the multi-second collector pauses it caused when it was not)."""

from __future__ import annotations

import gc
import weakref

from fastapi.testclient import TestClient

from shelfwise.services import Services
from shelfwise.web.app import create_app
from tests.fixtures.app import make_settings
from tests.fixtures.memory import forget_apps


def test_an_app_a_test_built_is_freed_when_the_test_ends() -> None:
    app = create_app(services=Services(make_settings("no-table")))
    with TestClient(app) as client:
        assert client.get("/docs").status_code == 200
    freed = weakref.ref(app)
    del app, client
    forget_apps()
    gc.collect()
    assert freed() is None, "something still holds the app (and its services) after the test"
