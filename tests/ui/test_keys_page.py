"""The Keys page's self-service forms in a real browser, on a real pipeline.

The team admin of "payments" logs in with its key (minted over ``/admin/keys``,
so the dashboard knows it from the key registry only), mints a key with the
form (shown once), rotates and revokes it with the buttons; each change holds
on the gateway at once, and ``key_events`` names the team admin. Forged POSTs
are refused 403, and a key that manages none sees its own keys read-only,
is refused the forms, and loses the dashboard once revoked.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest

from tests.self_service import Leads, actors, chat, start_leads
from tests.ui.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.store]


@pytest.fixture(scope="module")
def leads(tmp_path_factory: pytest.TempPathFactory, broker: str, simulator: str
          ) -> Iterator[Leads]:
    yield from start_leads(tmp_path_factory.mktemp("keys-page"), broker, simulator)


def _login(browser: Any, leads: Leads, key: str) -> Any:
    page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()
    page.goto(f"{leads.pipeline.gateway_url}/ui/login")
    page.fill("input[name=key]", key)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/ui/overview"), page.inner_text("body")
    page.goto(f"{leads.pipeline.gateway_url}/ui/keys")
    return page


def _row(page: Any, key_id: str) -> Any:
    return page.locator(f'#table-manage tr[data-key="{key_id}"]')


def test_a_team_admin_mints_rotates_and_revokes_with_the_forms(browser: Any, leads: Leads
                                                               ) -> None:
    page = _login(browser, leads, leads.lead_key)
    assert set(page.locator("#table-manage tbody td:nth-child(3)").all_inner_texts()) == {
        "payments"}
    assert page.locator("#mint-form input[name=team]").get_attribute("type") == "hidden"
    page.fill("#mint-form input[name=user]", "rita")
    page.fill("#mint-form input[name=name]", "laptop")
    page.fill("#mint-form input[name=rpm]", "60")
    page.fill("#mint-form input[name=allowed_models]", "gpt-4o*, claude-*")
    page.click("#mint-form button[type=submit]")
    page.wait_for_load_state()
    key = page.inner_text("#new-key").strip()
    key_id = page.inner_text("h1").removeprefix("Minted ")
    assert key.startswith("ml-") and key_id.startswith("key_")
    screenshot(page, "key-minted")
    assert chat(leads, key).status_code == 200

    page.goto(f"{leads.pipeline.gateway_url}/ui/keys")
    assert key not in page.content()  # shown once, on the answer page only
    row = _row(page, key_id).inner_text()
    assert "active" in row and "rpm 60" in row and "gpt-4o*, claude-*" in row
    screenshot(page, "keys-manage")
    _row(page, key_id).locator("input[name=grace]").fill("1h")
    _row(page, key_id).locator("form[action$='/rotate'] button").click()
    page.wait_for_load_state()
    successor = page.inner_text("#new-key").strip()
    assert successor.startswith("ml-") and successor != key
    assert chat(leads, successor).status_code == 200
    assert chat(leads, key).status_code == 200  # inside its grace

    page.goto(f"{leads.pipeline.gateway_url}/ui/keys")
    _row(page, key_id).locator("input[name=reason]").fill("laptop lost")
    _row(page, key_id).locator("form[action$='/revoke'] button").click()
    page.wait_for_load_state()
    assert page.inner_text("h1") == f"Revoked {key_id}"
    refusal = chat(leads, key)
    assert refusal.status_code == 401 and refusal.json()["error"]["code"] == "key_revoked"
    page.goto(f"{leads.pipeline.gateway_url}/ui/keys")
    assert _row(page, key_id).locator("td.status").inner_text() == "revoked"
    assert _row(page, key_id).locator("form").count() == 0
    lead = f"key:{leads.lead_id} (omar)"
    assert actors(leads.pipeline, key_id, 3) == [["minted", lead], ["rotated", lead],
                                                 ["revoked", lead]]
    page.context.close()


def test_a_forged_or_foreign_post_is_refused(browser: Any, leads: Leads) -> None:
    page = _login(browser, leads, leads.lead_key)
    base = leads.pipeline.gateway_url
    before = leads.api("GET", "/admin/keys", leads.admin_key).json()["keys"]
    for forged in ({"user": "forged", "team": "payments"},
                   {"user": "forged", "team": "payments", "csrf": "0" * 64}):
        answer = page.request.post(f"{base}/ui/keys/mint", form=forged)
        assert answer.status == 403 and "Form refused" in answer.text()
    answer = page.request.post(f"{base}/ui/keys/{leads.lead_id}/revoke", form={})
    assert answer.status == 403 and "Form refused" in answer.text()

    token = page.locator("#mint-form input[name=csrf]").get_attribute("value")
    other_team = page.request.post(f"{base}/ui/keys/mint", form={
        "csrf": token, "user": "forged", "team": "platform"})
    assert other_team.status == 403
    assert "may not manage keys of team 'platform'" in html.unescape(other_team.text())
    assert leads.api("GET", "/admin/keys", leads.admin_key).json()["keys"] == before
    page.context.close()


def test_a_key_that_manages_none_sees_its_own_read_only(browser: Any, leads: Leads) -> None:
    member = leads.mint(leads.lead_key, user="ivy", team="payments", name="ivy-laptop")
    page = _login(browser, leads, member["key"])
    assert page.locator("#mint-form").count() == 0
    assert page.locator("#table-manage form").count() == 0
    assert page.locator("#table-manage tbody td:first-child").all_inner_texts() == [member["id"]]
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(f"{leads.pipeline.gateway_url}/ui/keys/mint", form={
        "csrf": token, "user": "ivy2", "team": "payments"})
    assert answer.status == 403 and "Not permitted" in answer.text()

    revoked = leads.api("POST", f"/admin/keys/{member['id']}/revoke", leads.lead_key)
    assert revoked.status_code == 200
    page.goto(f"{leads.pipeline.gateway_url}/ui/keys")
    assert page.url.endswith("/ui/login")  # a revoked key loses the dashboard at once
    page.context.close()
