"""The Keys page's self-service part: mint, revoke and rotate from the dashboard.

``/ui/keys`` shows, under the key inventory, the keys the logged-in key may
manage (a platform admin's: every team's; a team admin's: its own team's),
with their status, a form to mint one, and revoke and rotate buttons. Any
other key sees its holder's own keys, read-only. The forms post to

    /ui/keys/mint               the new key is shown once, on the answer page
    /ui/keys/{id}/revoke        with an optional reason
    /ui/keys/{id}/rotate        the successor is shown once; grace like 24h

Each POST is CSRF-checked before anything else (``Dashboard.form``), then
done by ``KeyService``: the functions ``/admin/keys`` calls, so the page and
the API cannot differ in what they allow. A refusal is a page with the
service's own sentence and status (400, 403, 404, 503). The answer is a page
of its own, not the Keys page again: it needs nothing from the store, so a
key just minted is never lost to a store outage, and it is sent ``no-store``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from meterline.governance.key_admin import Actor
from meterline.schemas import KeySettings

from ..errors import Forbidden, GatewayError
from ..key_service import KeyService, actor_of, describe
from .access import viewer_for
from .csrf import CsrfRefused

if TYPE_CHECKING:
    from .app import Dashboard

#: The mint form's text inputs, named as ``KeyService.mint`` takes them.
MINT_FORM = ("team", "user", "repo", "name", "expires", "rpm", "tpm", "budget_usd",
             "budget_mode", "allowed_models", "allowed_providers")
_TITLES = {400: "Bad input", 403: "Not permitted", 404: "No such key",
           503: "Key registry unavailable"}


@dataclass(frozen=True, slots=True)
class Management:
    """What the Keys page offers the logged-in key: ``team`` is a team admin's own team
    ("" for a platform admin); ``keys`` are described (``key_service.describe``)."""

    manager: bool
    team: str
    keys: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Done:
    """The answer page of a change: what happened, and a key text to show once."""

    title: str
    message: str
    key: str = ""


Change = Callable[[Actor, dict[str, list[str]]], Awaitable[Done]]


def management(service: KeyService, holder: KeySettings) -> Management:
    try:
        actor = actor_of(holder)
    except Forbidden:
        return Management(False, holder.team, [describe(key) for key in service.held_by(holder)])
    return Management(True, actor.team or "", [describe(key) for key in service.visible(actor)])


def mint_request(form: dict[str, list[str]]) -> dict[str, Any]:
    """The mint form as ``KeyService.mint`` takes it: filled inputs only, the checkbox a flag."""
    given: dict[str, Any] = {name: form[name][0].strip() for name in MINT_FORM
                             if form.get(name) and form[name][0].strip()}
    if form.get("team_admin"):
        given["team_admin"] = True
    return given


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


async def _answer(ui: Dashboard, request: Request, change: Change) -> Response:
    """CSRF check, session, the change, then its answer page (or the refusal's)."""
    holder = ui.session(request)
    viewer = viewer_for(holder) if holder is not None else None
    try:
        form = await ui.form(request)
    except CsrfRefused as exc:
        return ui.problem(403, "Form refused", str(exc), viewer, request)
    if holder is None:
        return RedirectResponse("/ui/login", status_code=303)
    try:
        done = await change(actor_of(holder), form)
    except GatewayError as exc:
        return ui.problem(exc.status, _TITLES.get(exc.status, "Refused"), exc.message, viewer,
                          request)
    response = ui.html("key_change.html", request=request, title=done.title, viewer=viewer,
                       done=done)
    response.headers["cache-control"] = "no-store"
    return response


def add_routes(app: FastAPI, ui: Dashboard) -> None:
    """The three POST routes of the Keys page's forms."""
    keys = ui.keys

    @app.post("/ui/keys/mint")
    async def mint(request: Request) -> Response:
        async def change(actor: Actor, form: dict[str, list[str]]) -> Done:
            key, record = await keys.mint(actor, mint_request(form))
            return Done(f"Minted {record.id}", f"A key for {record.user} in team {record.team}.",
                        key)
        return await _answer(ui, request, change)

    @app.post("/ui/keys/{key_id}/revoke")
    async def revoke(request: Request, key_id: str) -> Response:
        async def change(actor: Actor, form: dict[str, list[str]]) -> Done:
            record = await keys.revoke(actor, key_id, _first(form, "reason"))
            return Done(f"Revoked {record.id}", f"The key of {record.user} in team "
                        f"{record.team} is refused from its next call on.")
        return await _answer(ui, request, change)

    @app.post("/ui/keys/{key_id}/rotate")
    async def rotate(request: Request, key_id: str) -> Response:
        async def change(actor: Actor, form: dict[str, list[str]]) -> Done:
            key, successor, old = await keys.rotate(actor, key_id, _first(form, "grace"))
            until = f"{old.expires_at:%Y-%m-%d %H:%M} UTC" if old.expires_at else "now"
            return Done(f"Rotated {old.id}", f"{successor.id} replaces {old.id} for "
                        f"{successor.user} in team {successor.team}; {old.id} keeps working "
                        f"until {until}.", key)
        return await _answer(ui, request, change)
