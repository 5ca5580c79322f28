"""The dashboard's ASGI app (FastAPI + Jinja2), mounted by the gateway under ``/ui``.

Pages (all GET, all taking ``from``, ``to``, ``team``, ``repo``, ``tool``,
``model``; add ``csv=<table>`` for a table as CSV):

    /ui/overview        spend vs budget per team, daily chart, forecast, routing savings
    /ui/team/{team}     developer x day, repository x day, tool/model mix, top requests
    /ui/keys            key inventory: last use, spend, idle keys; and the keys the
                        viewer manages, with forms to mint, revoke, rotate (``key_pages``)
    /ui/buckets         unpriced usage and unattributed spend
    /ui/activity        anomalies and budget alerts sent
    /ui/login, /ui/logout

The only writes are the Keys page's forms, through the same ``KeyService``
as the gateway's ``/admin/keys``; every POST is CSRF-checked (``csrf``).

Every refusal is a page with a sentence, never a traceback: bad filters 400,
unknown team 404, another team's data 403, store down 503, and anything else
500 with the error logged here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from meterline.schemas import KeySettings, Settings
from meterline.schemas.store_auth import resolve_token

from ..auth import KeyRing, UnknownKey, check_usable
from ..errors import Unauthenticated
from ..key_service import KeyService
from . import key_pages, pages
from .access import COOKIE_NAME, SESSION_TTL_S, Forbidden, KeyDirectory, SessionSigner, Viewer, viewer_for
from .csrf import CSRF_FIELD, CsrfGuard, CsrfRefused
from .filters import BadFilter, Filters, parse_filters
from .store_reader import StoreReader, StoreUnavailable
from .tables import Table

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PageBuilder = Callable[[Viewer, Filters], Awaitable[pages.Page]]


class UnknownTeam(Exception):
    """A team name no configuration or ledger row knows; rendered as a 404 page."""


def _money(value: Any) -> str:
    return "" if value is None or value == "" else f"${value:,.2f}"


def unusable(record: KeySettings) -> str:
    """Why ``record`` may not log in (revoked, expired), or "" when it may."""
    try:
        check_usable(record, datetime.now(UTC))
    except Unauthenticated as exc:
        return exc.message
    return ""


class Dashboard:
    """Holds what every request needs: settings, the store reader, keys and templates.

    ``keys`` is the gateway's key service (its registry followed live); a dashboard
    served on its own makes one over the configured keys and the keys file.
    """

    def __init__(self, settings: Settings, store_url: str | None = None,
                 keys: KeyService | None = None) -> None:
        self.settings = settings
        self.reader = StoreReader(store_url or f"http://{settings.store.host}:{settings.store.port}",
                                  token=lambda: resolve_token(settings, "read"))
        self.keys = keys or KeyService(settings, KeyRing(settings.keys, settings.keys_file))
        self.directory = KeyDirectory(settings.keys, settings.keys_file, self.keys.keyring.registry)
        self.signer = SessionSigner()
        self.csrf = CsrfGuard()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]))
        self.templates.filters["money"] = _money

    async def known_key(self, presented: str) -> KeySettings | None:
        """The record of a presented key, as the gateway finds it: a key minted a moment ago
        is found once the registry has caught up (``KeyRing.lookup_waiting``)."""
        try:
            return await self.keys.keyring.lookup_waiting(presented)
        except UnknownKey:
            return None

    def session(self, request: Request) -> KeySettings | None:
        """The logged-in key's record; None without a valid session or once it is unusable."""
        key_id = self.signer.key_id(request.cookies.get(COOKIE_NAME))
        record = self.directory.records().get(key_id) if key_id else None
        return record if record is not None and not unusable(record) else None

    def viewer(self, request: Request) -> Viewer | None:
        record = self.session(request)
        return viewer_for(record) if record is not None else None

    def html(self, template: str, status: int = 200, *, request: Request | None = None,
             **context: Any) -> HTMLResponse:
        """The page; with ``request``, its forms carry this browser's CSRF token (``csrf``)."""
        nonce, context["csrf_token"] = self.csrf.token_for(request) if request else ("", "")
        body = self.templates.get_template(template).render(**context)
        response = HTMLResponse(body, status_code=status)
        if request is not None:
            self.csrf.set_cookie(response, request, nonce)
        return response

    def problem(self, status: int, title: str, message: str, viewer: Viewer | None,
                request: Request | None = None) -> HTMLResponse:
        return self.html("error.html", status, request=request, title=title, message=message,
                         viewer=viewer)

    async def form(self, request: Request) -> dict[str, list[str]]:
        """A POSTed form's fields, after the CSRF check (``CsrfRefused``)."""
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        self.csrf.check(request, (form.get(CSRF_FIELD) or [""])[0])
        return form

    async def page(self, request: Request, template: str, title: str, build: PageBuilder,
                   team: str = "", extra: dict[str, Any] | None = None) -> Response:
        """Authenticate, validate filters, build the page, then render it or one table as CSV."""
        viewer = self.viewer(request)
        if viewer is None:
            return RedirectResponse("/ui/login", status_code=303)
        try:
            params = dict(request.query_params)
            if team:
                params["team"] = team
            filters = parse_filters(params, self.settings.timezone)
            if filters.team:
                viewer.require(filters.team)  # before the lookup: a 404 would leak which teams exist
                if filters.team not in await pages.known_teams(self.reader, self.settings):
                    raise UnknownTeam(filters.team)
            page = await build(viewer, filters)
            wanted = request.query_params.get("csv")
            if wanted:
                return self._csv(page.tables, wanted, title)
            choices = await pages.choices(self.reader, viewer, filters)
        except BadFilter as exc:
            return self.problem(400, "Bad filter", str(exc), viewer, request)
        except Forbidden as exc:
            return self.problem(403, "Not your team", str(exc), viewer, request)
        except UnknownTeam as exc:
            return self.problem(404, "Unknown team",
                                f"There is no team called '{exc}' in the configuration or the ledger.",
                                viewer, request)
        except StoreUnavailable as exc:
            return self.problem(503, "Store unavailable", str(exc), viewer, request)
        # JSON inside <script>: "</" must not close the element, whatever a label contains
        charts_json = json.dumps(page.charts).replace("</", "<\\/")
        return self.html(template, request=request, title=title, viewer=viewer, filters=filters,
                         page=page, choices=choices, charts_json=charts_json,
                         path=request.url.path, **(extra or {}))

    def _csv(self, tables: list[Table], name: str, title: str) -> Response:
        for table in tables:
            if table.name == name:
                filename = f"meterline-{title.lower().replace(' ', '-')}-{name}.csv"
                return Response(table.csv(), media_type="text/csv; charset=utf-8",
                                headers={"content-disposition": f'attachment; filename="{filename}"'})
        raise BadFilter(f"This page has no table called {name!r}.")


def create_ui_app(settings: Settings, store_url: str | None = None, *,
                  key_service: KeyService | None = None) -> FastAPI:
    """The dashboard app; every route path starts with ``/ui`` (the gateway mounts by prefix)."""
    ui = Dashboard(settings, store_url, key_service)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTMLResponse:
        log.exception("dashboard error on %s", request.url.path)
        return ui.problem(500, "Dashboard error", f"Something went wrong ({type(exc).__name__}); "
                          "it has been logged.", None)

    @app.get("/ui")
    @app.get("/ui/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/overview", status_code=303)

    @app.get("/ui/login")
    async def login_form(request: Request) -> Response:
        return ui.html("login.html", request=request, title="Log in", viewer=ui.viewer(request),
                       error="")

    @app.post("/ui/login")
    async def login(request: Request) -> Response:
        try:
            form = await ui.form(request)
        except CsrfRefused as exc:
            return ui.problem(403, "Form refused", str(exc), None, request)
        presented = (form.get("key") or [""])[0].strip()
        record = await ui.known_key(presented) if presented else None
        refusal = ("That key is not a Meterline virtual key known to this gateway."
                   if record is None else unusable(record))
        if record is None or refusal:
            return ui.html("login.html", 401, request=request, title="Log in", viewer=None,
                           error=refusal)
        response = RedirectResponse("/ui/overview", status_code=303)
        response.set_cookie(COOKIE_NAME, ui.signer.issue(record.id), max_age=SESSION_TTL_S,
                            path="/ui", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/ui/logout")
    async def logout(request: Request) -> Response:
        try:
            await ui.form(request)
        except CsrfRefused as exc:
            return ui.problem(403, "Form refused", str(exc), ui.viewer(request), request)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/ui")
        return response

    @app.get("/ui/overview")
    async def overview(request: Request) -> Response:
        return await ui.page(request, "overview.html", "Overview",
                             lambda viewer, f: pages.overview(ui.reader, settings, viewer, f))

    @app.get("/ui/team/{team}")
    async def team(request: Request, team: str) -> Response:
        return await ui.page(request, "team.html", f"Team {team}",
                             lambda viewer, f: pages.team(ui.reader, viewer, f), team=team)

    @app.get("/ui/keys")
    async def keys(request: Request) -> Response:
        holder = ui.session(request)
        manage = key_pages.management(ui.keys, holder) if holder is not None else None
        return await ui.page(request, "keys.html", "Keys",
                             lambda viewer, f: pages.keys(ui.reader, settings, ui.directory, viewer, f),
                             extra={"manage": manage})

    key_pages.add_routes(app, ui)

    @app.get("/ui/buckets")
    async def buckets(request: Request) -> Response:
        return await ui.page(request, "buckets.html", "Unpriced and unattributed",
                             lambda viewer, f: pages.buckets(ui.reader, viewer, f))

    @app.get("/ui/reconciliation")
    async def reconciliation(request: Request) -> Response:
        return await ui.page(request, "reconciliation.html", "Reconciliation",
                             lambda viewer, f: pages.reconciliation(ui.reader, viewer, f))

    @app.get("/ui/activity")
    async def activity(request: Request) -> Response:
        return await ui.page(request, "activity.html", "Anomalies and alerts",
                             lambda viewer, f: pages.activity(ui.reader, viewer, f))

    return app
