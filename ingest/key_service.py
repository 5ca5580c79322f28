"""Key self-service: the operations behind ``/admin/keys`` and the dashboard's Keys page.

One implementation of each, shared by both surfaces (``key_api`` speaks JSON,
``ui.key_pages`` forms): who is asking (``authenticate``: a usable admin or
team_admin key), which keys they see (``visible``), and ``mint``, ``revoke``
and ``rotate`` from ``governance.key_admin``, recorded as ``key:<id> (<user>)``.

A change is published to the registry topic and, once the broker confirmed it,
applied to this gateway's own registry at once, so it holds here on the next
call; the other gateways apply it from the topic within a poll. Publishing
waits for the broker (librdkafka's flush), so it runs in a thread, never on
the event loop; changes are made one at a time per process, so two
revocations of one key cannot both pass the "already revoked" check.

Refusals are ``GatewayError``s: the API renders them in OpenAI's error shape,
the dashboard as a page with the same sentence. Input is checked here, with
the parsers the CLI uses (``governance.key_fields``), so the three front ends agree on what a
duration, an amount or a model list is.
"""

from __future__ import annotations

import asyncio
import logging
from argparse import ArgumentTypeError
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.governance import key_admin
from meterline.governance.key_admin import Actor, KeyPublisher, NotPermitted
from meterline.governance.key_fields import (
    duration,
    moment_or_duration,
    names,
    status_of,
    unknown_team,
    usd,
)
from meterline.kafka import BrokerError
from meterline.schemas import KeySettings, Settings
from meterline.schemas.governance import KeyEvent

from .auth import KeyRing, check_usable
from .errors import BadRequest, Forbidden, NotFound, RegistryUnavailable

log = logging.getLogger(__name__)



def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip()


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be an amount in USD")
    return usd(str(value))


def _mode(value: Any) -> str:
    if value not in ("alert", "block"):
        raise ValueError("must be 'alert' or 'block'")
    return str(value)


def _names(value: Any) -> list[str]:
    """A JSON list of names, or the form's comma-separated text."""
    if isinstance(value, str):
        return names(value)
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError("must be a list of names")
    return [name.strip() for name in value if name.strip()]


def _expiry(value: Any) -> datetime:
    """An ISO time or a duration from now (``30d``), later than now."""
    moment = moment_or_duration(_text(value))
    if moment <= datetime.now(UTC):
        raise ValueError(f"{moment:%Y-%m-%d %H:%M} UTC is already past")
    return moment


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


#: What ``mint`` accepts: input name -> (``KeySettings`` field, parser).
MINT_INPUT: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "user": ("user", _text), "team": ("team", _text), "repo": ("repo", _text),
    "name": ("name", _text), "expires": ("expires_at", _expiry),
    "rpm": ("rpm", _count), "tpm": ("tpm", _count), "budget_usd": ("budget_usd", _amount),
    "budget_mode": ("budget_mode", _mode), "allowed_models": ("allowed_models", _names),
    "allowed_providers": ("allowed_providers", _names), "team_admin": ("team_admin", _flag),
    "admin": ("admin", _flag),
}


def mint_fields(given: dict[str, Any]) -> dict[str, Any]:
    """The ``KeySettings`` fields of a mint request; ``BadRequest`` naming the field at fault."""
    unknown = sorted(set(given) - set(MINT_INPUT))
    if unknown:
        raise BadRequest(f"Unknown field(s) {', '.join(unknown)}; a key takes "
                         f"{', '.join(MINT_INPUT)}.", param=unknown[0])
    fields: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        field, parse = MINT_INPUT[name]
        try:
            fields[field] = parse(value)
        except (ValueError, ArgumentTypeError) as exc:
            raise BadRequest(f"'{name}': {exc}.", param=name) from None
    for required in ("user", "team"):
        if not fields.get(required):
            raise BadRequest(f"'{required}' is required.", param=required)
    return fields


def describe(key: KeySettings, now: datetime | None = None) -> dict[str, Any]:
    """A key as the API and the page show it: every attribute but its hash, and its status."""
    shown = key.model_dump(mode="json", exclude={"sha256"})
    shown["status"] = status_of(key, now or datetime.now(UTC))
    return shown


def actor_of(key: KeySettings) -> Actor:
    """Who ``key``'s holder is as a key manager; ``Forbidden`` unless admin or team_admin."""
    try:
        return Actor.of_key(key)
    except NotPermitted as exc:
        raise Forbidden(f"{exc} ({key.id} is neither).") from None


@contextmanager
def _refusals() -> Iterator[None]:
    """``key_admin``'s refusals as GatewayErrors: not permitted 403, an invalid change 400."""
    try:
        yield
    except NotPermitted as exc:  # on the books: who tried to change whose keys
        log.warning("key change refused: %s", exc)
        raise Forbidden(str(exc)) from None
    except ValueError as exc:  # pydantic's ValidationError is one
        raise BadRequest(str(exc)) from None


class KeyService:
    """The key operations of one gateway process, on its ``KeyRing``."""

    #: How long a change waits for the broker's confirmation.
    publish_timeout_s = 15.0

    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self.settings = settings
        self.keyring = keyring
        self._publisher: KeyPublisher | None = None
        self._one_change = asyncio.Lock()

    async def authenticate(self, presented: str | None) -> Actor:
        """The actor holding ``presented``: 401 unknown, revoked or expired, 403 not an admin."""
        key = await self.keyring.lookup_waiting(presented)
        check_usable(key, datetime.now(UTC))
        return actor_of(key)

    def visible(self, actor: Actor, team: str = "") -> list[KeySettings]:
        """The keys ``actor`` may manage (``team``: of that team only), by team and user."""
        if team:
            with _refusals():
                actor.check(team)
        keys = [key for key in self.keyring.known()
                if actor.may_manage(key.team) and (not team or key.team == team)]
        return sorted(keys, key=lambda key: (key.team, key.user, key.created_at))

    def held_by(self, holder: KeySettings) -> list[KeySettings]:
        """The keys of ``holder``'s user in its team: what a key that manages none may see."""
        return sorted((key for key in self.keyring.known()
                       if key.user == holder.user and key.team == holder.team),
                      key=lambda key: key.created_at)

    async def mint(self, actor: Actor, given: dict[str, Any]) -> tuple[str, KeySettings]:
        """A new key from a mint request (``MINT_INPUT``): (key text, shown once; its record)."""
        fields = mint_fields(given)
        with _refusals():  # before the team check: a team admin may not probe team names
            actor.check(fields["team"])
        problem = unknown_team(self.settings, fields["team"])
        if problem:
            raise BadRequest(problem, param="team")
        async with self._one_change:
            with _refusals():
                key, event = key_admin.mint(actor, **fields)
            (record,) = await self._commit([event])
        return key, record

    async def revoke(self, actor: Actor, key_id: str, reason: str = "") -> KeySettings:
        """Revoke ``key_id``: refused from the next call on (here at once). Its new state."""
        async with self._one_change:
            record = self._record(key_id)
            with _refusals():
                event = key_admin.revoke(actor, record, reason)
            (revoked,) = await self._commit([event])
        return revoked

    async def rotate(self, actor: Actor, key_id: str, grace: str = ""
                     ) -> tuple[str, KeySettings, KeySettings]:
        """A successor for ``key_id``; the old key works for ``grace`` (``24h``; default
        ``governance.rotation_grace_h``). (new key text, successor, old key's new state)."""
        span = self._grace(grace)
        async with self._one_change:
            record = self._record(key_id)
            with _refusals():
                key, events = key_admin.rotate(actor, record, span)
            successor, old = await self._commit(events)
        return key, successor, old

    def _grace(self, text: str) -> timedelta:
        if not text:
            return timedelta(hours=self.settings.governance.rotation_grace_h)
        try:
            return duration(text)
        except ArgumentTypeError as exc:
            raise BadRequest(f"'grace': {exc}.", param="grace") from None

    def _record(self, key_id: str) -> KeySettings:
        record = self.keyring.get(key_id)
        if record is None:
            raise NotFound(f"There is no key {key_id!r}; list the keys to see their ids.")
        return record

    async def _commit(self, events: list[KeyEvent]) -> list[KeySettings]:
        """Publish ``events`` (503 unless the broker confirms), then apply them here."""
        try:
            await asyncio.to_thread(self._publish, events)
        except BrokerError as exc:
            raise RegistryUnavailable(
                f"The key registry's broker did not confirm the change ({exc}), so it may not "
                "have been made; list the keys, then try again.") from exc
        for event in events:
            self.keyring.registry.apply_event(event)
            log.info("key %s %s by %s", event.key_id, event.action, event.actor)
        return [KeySettings.model_validate(event.state) for event in events]

    def _publish(self, events: list[KeyEvent]) -> None:
        if self._publisher is None:
            self._publisher = KeyPublisher(self.settings.kafka)
        self._publisher.publish(events, self.publish_timeout_s)
