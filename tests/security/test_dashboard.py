"""The dashboard's session and forms, on the real app reading the real store endpoint.

Cookies are HttpOnly, SameSite=Strict, scoped to ``/ui`` and Secure when the
request came over HTTPS; every form carries a CSRF token that is checked, and
a POST from another origin or without the token is refused; a virtual key
put in a URL is never written to a log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from meterline.ingest.auth import hash_key, key_id_for
from meterline.ingest.ui import create_ui_app
from meterline.schemas import Settings
from tests.harness import TEST_STORE_READ_TOKEN, ThreadedServer
from tests.security.conftest import Store

pytestmark = pytest.mark.store

KEY = "ml-security-dashboard-admin-key-0123456789"
PAGES = ["/ui/overview", "/ui/team/platform", "/ui/keys", "/ui/buckets", "/ui/activity"]
FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)
TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def dashboard(store: Store) -> Iterator[str]:
    digest = hash_key(KEY)
    settings = Settings(keys=[{"id": key_id_for(digest), "sha256": digest, "user": "ops",
                               "team": "platform", "admin": True}],
                        teams=[{"name": "platform", "cost_centre": "CC-1"}],
                        store={"read_token": TEST_STORE_READ_TOKEN})
    server = ThreadedServer(create_ui_app(settings, store.url)).start()
    yield server.url
    server.stop()


def csrf_of(page: httpx.Response) -> str:
    found = TOKEN.search(page.text)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


def logged_in(client: httpx.Client) -> httpx.Response:
    token = csrf_of(client.get("/ui/login"))
    response = client.post("/ui/login", data={"key": KEY, "csrf": token})
    assert response.status_code == 303, response.text
    return response


def test_cookies_are_httponly_samesite_strict_and_secure_over_https(dashboard: str) -> None:
    with httpx.Client(base_url=dashboard) as client:
        cookie = logged_in(client).headers["set-cookie"]
        assert KEY not in cookie
        for flag in ("HttpOnly", "SameSite=strict", "Path=/ui"):
            assert flag in cookie
        assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would be lost
    https = {"x-forwarded-proto": "https"}  # uvicorn trusts it from loopback (its default)
    with httpx.Client(base_url=dashboard, headers=https) as client:
        form = client.get("/ui/login")
        assert "Secure" in form.headers["set-cookie"]
        login = client.post("/ui/login", data={"key": KEY, "csrf": csrf_of(form)})
        session = login.headers["set-cookie"]
        assert "Secure" in session and "HttpOnly" in session and "SameSite=strict" in session


def test_every_form_carries_a_csrf_token(dashboard: str) -> None:
    with httpx.Client(base_url=dashboard) as client:
        pages = [client.get("/ui/login")]
        logged_in(client)
        pages += [client.get(path) for path in PAGES]
        forms = 0
        for page in pages:
            assert page.status_code == 200, (page.url, page.text[:300])
            for form in FORM.findall(page.text):
                if re.search(r'method="post"', form, re.I):
                    forms += 1
                    assert TOKEN.search(form), (page.url, form[:200])
        # the login form, the logout form on every page, and the Keys page's mint form and
        # rotate and revoke forms of the one key (the admin's own)
        assert forms == 1 + len(PAGES) + 3


@pytest.mark.parametrize("attack", ["no token", "wrong token", "token of another browser",
                                    "other origin", "opaque origin"])
def test_a_forged_post_is_refused(dashboard: str, attack: str) -> None:
    with httpx.Client(base_url=dashboard) as victim, httpx.Client(base_url=dashboard) as other:
        token = csrf_of(victim.get("/ui/login"))
        data, headers = {"key": KEY, "csrf": token}, {}
        if attack == "no token":
            del data["csrf"]
        elif attack == "wrong token":
            data["csrf"] = "0" * 64
        elif attack == "token of another browser":
            data["csrf"] = csrf_of(other.get("/ui/login"))
        elif attack == "other origin":
            headers = {"origin": "https://evil.example"}
        else:
            headers = {"origin": "null"}
        refused = victim.post("/ui/login", data=data, headers=headers)
        assert refused.status_code == 403 and "Form refused" in refused.text
        assert "meterline_session" not in refused.headers.get("set-cookie", "")


def test_logout_needs_the_token_too(dashboard: str) -> None:
    with httpx.Client(base_url=dashboard) as client:
        logged_in(client)
        assert client.post("/ui/logout").status_code == 403
        assert client.get("/ui/overview").status_code == 200  # still logged in
        page = client.get("/ui/overview")
        out = client.post("/ui/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"


def test_a_key_in_a_url_is_never_logged(dashboard: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), httpx.Client(base_url=dashboard) as client:
        for path in ("/ui/login", "/ui/overview", "/ui/team/platform", "/ui/keys",
                     "/ui/nope", "/ui/static/nope.js"):
            client.get(path, params={"key": KEY, "api_key": KEY})
        logged_in(client)
        client.get("/ui/overview", params={"key": KEY, "from": "not-a-date"})
        client.get("/ui/team/" + KEY)
    # the test's own HTTP client (httpx, httpcore) logs the URLs it requests; the server must not
    served = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("meterline") for r in served)  # the server did log something
    for record in served:
        assert KEY not in record.getMessage() + str(record.args), record.name
