"""``meterline keys … --gateway URL``: the key commands through a gateway's HTTP API.

For team leads, who hold a team_admin key but have no broker access: the
commands call ``/admin/keys`` (docs/gateway.md) with the key in
``$METERLINE_ADMIN_KEY`` (an environment variable, not an argument, so the
key stays out of shell history and ``ps``). The gateway checks what the key
may do and records the change as ``key:<id> (<user>)``. Output and exit
status are ``meterline keys``' own: the key last on stdout, 1 when the
gateway cannot be reached or refuses the change, 2 for bad arguments
(including the gateway's 400).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from meterline.cli.keys import key_fields, print_created, print_keys

ADMIN_KEY_ENV = "METERLINE_ADMIN_KEY"
TIMEOUT_S = 30.0


class Refused(Exception):
    """The gateway could not be reached or refused; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def call(gateway: str, key: str, method: str, path: str,
         body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON answer of ``method path`` on ``gateway``; ``Refused`` with the gateway's message."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        gateway.rstrip("/") + path, data=data, method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise Refused(f"the gateway refused ({exc.code}): {_message(exc.read())}",
                      2 if exc.code == 400 else 1) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise Refused(f"the gateway at {gateway} could not be reached: {exc}") from None


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:300]


def mint_body(args: argparse.Namespace) -> dict[str, Any]:
    """``create``'s arguments as ``POST /admin/keys`` takes them."""
    body = {name: value for name, value in key_fields(args).items()
            if value != "" and value is not False}
    if "expires_at" in body:
        body["expires"] = body.pop("expires_at").isoformat()
    if "budget_usd" in body:
        body["budget_usd"] = str(body["budget_usd"])
    return body


def _create(args: argparse.Namespace, key: str) -> None:
    if args.file:
        raise Refused("--file writes the local keys file; it cannot go with --gateway", 2)
    made = call(args.gateway, key, "POST", "/admin/keys", mint_body(args))
    print_created(made["key"], made["id"], made["user"], made["team"],
                  f"hash stored in the key registry through {args.gateway}")


def _list(args: argparse.Namespace, key: str) -> None:
    query = f"?{urlencode({'team': args.team})}" if args.team else ""
    print_keys(call(args.gateway, key, "GET", f"/admin/keys{query}")["keys"])


def _revoke(args: argparse.Namespace, key: str) -> None:
    done = call(args.gateway, key, "POST", f"/admin/keys/{quote(args.key_id)}/revoke",
                {"reason": args.reason})
    print(f"revoked {done['id']}: {args.reason}".rstrip(": "), file=sys.stderr)


def _rotate(args: argparse.Namespace, key: str) -> None:
    body = {"grace": f"{args.grace.total_seconds():g}s"} if args.grace else {}
    done = call(args.gateway, key, "POST", f"/admin/keys/{quote(args.key_id)}/rotate", body)
    print(f"minted {done['id']}: rotation of {done['old_id']}", file=sys.stderr)
    print(f"rotated {done['old_id']}: valid until {done['old_valid_until']}", file=sys.stderr)
    print("the new key is shown once:", file=sys.stderr)
    print(done["key"])


_COMMANDS = {"create": _create, "list": _list, "revoke": _revoke, "rotate": _rotate}


def run(args: argparse.Namespace) -> int:
    """Run ``args.keys_command`` against ``args.gateway``; the exit status."""
    key = os.environ.get(ADMIN_KEY_ENV, "").strip()
    try:
        if not key:
            raise Refused(f"--gateway needs your admin or team_admin key in ${ADMIN_KEY_ENV}", 2)
        _COMMANDS[args.keys_command](args, key)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    return 0
