"""The dashboard with no store behind it: a page that says so, never a traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from meterline.embedded import free_port
from meterline.ingest.auth import hash_key, key_id_for
from meterline.ingest.ui import create_ui_app
from meterline.schemas import Settings
from tests.harness import ThreadedServer

KEY = "ml-test-dashboard-key-without-a-store"


@pytest.fixture
def dashboard() -> Iterator[str]:
    digest = hash_key(KEY)
    settings = Settings(keys=[{"id": key_id_for(digest), "sha256": digest, "user": "ops",
                               "team": "platform", "admin": True}])
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = ThreadedServer(create_ui_app(settings, closed)).start()
    yield server.url
    server.stop()


def test_an_unreachable_store_is_a_503_page_and_the_key_never_reaches_the_cookie(dashboard: str) -> None:
    with httpx.Client(base_url=dashboard) as client:
        assert client.get("/ui/overview").headers["location"] == "/ui/login"
        form = client.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        login = client.post("/ui/login", data={"key": KEY, "csrf": token.group(1)})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert KEY not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = client.get("/ui/overview")
        assert page.status_code == 503
        assert "Store unavailable" in page.text and "is not reachable" in page.text
        assert "Traceback" not in page.text
        assert client.get("/ui/static/uPlot.iife.min.js").status_code == 200
