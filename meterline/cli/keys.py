"""``meterline keys``: mint, list, rotate and revoke virtual keys (docs/governance.md).

Run with the deployment's configuration, the CLI is a platform admin: it
writes key events to the registry (the broker's compacted ``keys`` topic),
which every gateway follows, recorded as ``cli:<user>@<host>``. ``create
--file`` writes the bootstrap keys file instead (``meterline.keys.yaml``), for
a gateway started without a broker around it.

With ``--gateway URL`` each command goes through that gateway's HTTP API
instead (``/admin/keys``, docs/gateway.md), authenticated by the admin or
team_admin key in ``$METERLINE_ADMIN_KEY`` and recorded as ``key:<id>
(<user>)``: for team leads, who have such a key but no broker access
(``keys_http``).

Exit status: 0 done, 1 the broker (registry) or the gateway is not reachable
or the change is refused, 2 bad arguments (the gateway's 400 included).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from meterline.governance.key_fields import (
    duration,
    moment_or_duration,
    names,
    status_of,
    unknown_team,
    usd,
)
from meterline.schemas import KeySettings, Settings

__all__ = ["add_parsers", "key_fields", "print_created", "print_keys"]

def key_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The key attributes ``create`` was given, as ``KeySettings`` fields."""
    fields: dict[str, Any] = {"user": args.user, "team": args.team, "repo": args.repo,
                              "name": args.name, "admin": args.admin,
                              "team_admin": args.team_admin}
    for name in ("expires_at", "rpm", "tpm", "budget_usd", "budget_mode"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    for name in ("allowed_models", "allowed_providers"):
        if getattr(args, name):
            fields[name] = names(getattr(args, name))
    return fields


def print_created(key: str, key_id: str, user: str, team: str, where: str) -> None:
    print(f"created {key_id} for user {user} in team {team} ({where}); "
          "the key is shown once:", file=sys.stderr)
    print(key)


#: The columns of ``keys list``, as ``KeySettings`` fields plus ``status``.
LIST_COLUMNS = ("id", "user", "team", "repo", "name", "status", "created_at")


def print_keys(rows: list[dict[str, Any]]) -> None:
    print("\t".join(LIST_COLUMNS))
    for row in rows:
        print("\t".join(str(row[column]) for column in LIST_COLUMNS))


def _create(args: argparse.Namespace, settings: Settings) -> int:
    if args.gateway:
        return _over_http(args)
    problem = unknown_team(settings, args.team)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    fields = key_fields(args)
    if args.file:
        from meterline.ingest import mint_key

        key, record = mint_key(Path(settings.keys_file), **fields)
        where = f"hash stored in {settings.keys_file}"
    else:
        from meterline.governance.key_admin import Actor, mint

        key, event = mint(Actor.cli(), **fields)
        if (failed := _publish(settings, [event])) is not None:
            return failed
        record = KeySettings.model_validate(event.state)
        where = "hash stored in the key registry"
    print_created(key, record.id, record.user, record.team, where)
    return 0


def _publish(settings: Settings, events: list[Any]) -> int | None:
    """Publish ``events``; None when done, else the exit status (the reason printed)."""
    from meterline.governance.key_admin import KeyPublisher
    from meterline.kafka import BrokerError

    try:
        KeyPublisher(settings.kafka).publish(events)
    except BrokerError as exc:
        print(f"error: the key registry's broker ({settings.kafka.bootstrap_servers}) did not "
              f"take the change: {exc}. Start `meterline up` (or the deployment's broker), or "
              "mint a bootstrap key with `meterline keys create --file`.", file=sys.stderr)
        return 1
    return None


def _current(settings: Settings) -> Any:
    """Every key the deployment knows: configuration, keys file and registry (caught up)."""
    from meterline.governance.registry import KeyEventFollower, KeyRegistry
    from meterline.ingest.auth import KeyRing

    registry = KeyRegistry()
    follower = KeyEventFollower(settings.kafka, registry, role="keys")
    follower.start()
    caught_up = follower.caught_up.wait(15.0)
    follower.close()
    if not caught_up:
        print("warning: the key registry could not be read; listing the configured keys only",
              file=sys.stderr)
    return KeyRing(settings.keys, settings.keys_file, registry)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    if args.gateway:
        return _over_http(args)
    now = datetime.now(UTC)
    keys = sorted(_current(settings).known(), key=lambda k: (k.team, k.user, k.created_at))
    print_keys([{**key.model_dump(), "status": status_of(key, now)} for key in keys
                if not args.team or key.team == args.team])
    return 0


def _change(args: argparse.Namespace, settings: Settings) -> int:
    if args.gateway:
        return _over_http(args)
    from meterline.governance.key_admin import Actor, NotPermitted, revoke, rotate

    record = _current(settings).get(args.key_id)
    if record is None:
        print(f"error: no key {args.key_id!r} (see `meterline keys list`)", file=sys.stderr)
        return 1
    key = ""
    try:
        if args.keys_command == "revoke":
            events = [revoke(Actor.cli(), record, args.reason)]
        else:
            grace = args.grace or timedelta(hours=settings.governance.rotation_grace_h)
            key, events = rotate(Actor.cli(), record, grace)
    except (NotPermitted, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if (failed := _publish(settings, events)) is not None:
        return failed
    for event in events:
        print(f"{event.action} {event.key_id}: {event.reason}".rstrip(": "), file=sys.stderr)
    if key:
        print("the new key is shown once:", file=sys.stderr)
        print(key)
    return 0


def _over_http(args: argparse.Namespace) -> int:
    from meterline.cli.keys_http import run

    return run(args)


def _gateway_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default="", metavar="URL",
                        help="go through this gateway's HTTP API (http://gateway:8080) with the "
                             "admin or team_admin key in $METERLINE_ADMIN_KEY")


def add_parsers(commands: Any) -> None:
    """The ``keys`` command and its subcommands, on ``meterline``'s subparsers."""
    keys = commands.add_parser("keys", help="manage virtual keys").add_subparsers(
        dest="keys_command", required=True)
    create = keys.add_parser("create", help="mint a key; prints it as the last line")
    create.add_argument("--user", required=True)
    create.add_argument("--team", required=True)
    create.add_argument("--repo", default="", help="default repo for calls without a repo header")
    create.add_argument("--name", default="", help="what the key is for, e.g. 'cursor'")
    create.add_argument("--admin", action="store_true", help="platform admin: every team")
    create.add_argument("--team-admin", action="store_true",
                        help="may mint, rotate and revoke its own team's keys")
    create.add_argument("--expires", dest="expires_at", type=moment_or_duration, default=None,
                        help="a time (2027-01-31T00:00Z) or a duration from now (30d)")
    create.add_argument("--models", dest="allowed_models", default="",
                        help="comma-separated model patterns the key may call (claude-*)")
    create.add_argument("--providers", dest="allowed_providers", default="",
                        help="comma-separated provider names the key may call")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--tpm", type=int, default=None, help="tokens per minute")
    create.add_argument("--budget", dest="budget_usd", type=usd, default=None, help="USD/period")
    create.add_argument("--budget-mode", choices=("alert", "block"), default=None)
    create.add_argument("--file", action="store_true",
                        help="write the bootstrap keys file instead of the registry")
    create.set_defaults(run=_create)
    _gateway_option(create)
    listing = keys.add_parser("list", help="list keys (ids and status, never keys)")
    listing.add_argument("--team", default="")
    listing.set_defaults(run=_list)
    _gateway_option(listing)
    revoke = keys.add_parser("revoke", help="revoke a key on every gateway within seconds")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(run=_change)
    _gateway_option(revoke)
    rotate = keys.add_parser("rotate", help="mint a successor; the old key works until --grace")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=duration, default=None,
                        help="how long the old key stays valid (default: governance."
                             "rotation_grace_h)")
    rotate.set_defaults(run=_change)
    _gateway_option(rotate)
