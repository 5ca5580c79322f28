"""The store endpoint's credentials: header, roles, and where a client finds its token.

Wire contract (docs/security.md)::

    Authorization: Bearer <token>

Two static service credentials, compared in constant time by the store:

- ``read``: ``POST /query`` only (read-only SQL, bound parameters, limits);
- ``operator``: ``POST /jobs/<name>`` and ``POST /query``.

Values travel as ClickHouse HTTP query parameters: ``{name:Type}`` in the SQL,
``param_<name>=<value as ClickHouse text>`` in the URL (``query_url``).

A client finds its token in this order (``resolve_token``):

1. the setting, i.e. ``METERLINE_STORE__READ_TOKEN`` / ``METERLINE_STORE__OPERATOR_TOKEN``;
2. the token file ``meterline up`` wrote for its run, ``<data_dir>/store/<role>.token``
   (mode 0600, like Jupyter's runtime files), so ``meterline sql`` in another
   shell of the same user on the same machine needs no variable.

``up`` generates both tokens afresh on every run and overwrites the files, so
a token from an earlier run (a copied file, a line of shell history) is refused
by the next one: that is what "replayed" means for a static bearer token here.

This module is stdlib only; it never logs or prints a token.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from .settings import Settings

StoreRole = Literal["read", "operator"]

AUTH_HEADER = "Authorization"
_FILE_MODE = 0o600


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def token_file(data_dir: str | Path, role: StoreRole) -> Path:
    """Where ``meterline up`` leaves the ``role`` token for local clients."""
    return Path(data_dir) / "store" / f"{role}.token"


def write_token_file(data_dir: str | Path, role: StoreRole, token: str) -> Path:
    """Write ``token`` to its file, readable by this user only (0600), atomically.

    The file is created with mode 0600 before any byte is written (``O_EXCL``
    on a temporary name, then ``rename``), so no other local user can open it
    between creation and ``chmod``.
    """
    path = token_file(data_dir, role)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)
    return path


def read_token_file(data_dir: str | Path, role: StoreRole) -> str | None:
    """The token in ``role``'s file, or None if there is none (or it is empty)."""
    try:
        text = token_file(data_dir, role).read_text(encoding="ascii").strip()
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return None
    return text or None


def resolve_token(settings: Settings, role: StoreRole) -> str | None:
    """The token a client presents for ``role``: the setting, else ``up``'s file."""
    configured = settings.store.operator_token if role == "operator" else settings.store.read_token
    if configured is not None:
        return configured.get_secret_value()
    return read_token_file(settings.data_dir, role)


def auth_headers(token: str | None) -> dict[str, str]:
    """The request header carrying ``token`` (none when there is no token)."""
    return {AUTH_HEADER: f"Bearer {token}"} if token else {}


def query_url(base_url: str, fmt: str, parameters: Mapping[str, Any] | None) -> str:
    """``{base}/query?format=...&param_<name>=<value>...`` (values as ClickHouse text)."""
    args = [("format", fmt)]
    args += [(f"param_{name}", _text(value)) for name, value in (parameters or {}).items()]
    return f"{base_url.rstrip('/')}/query?{urlencode(args)}"


def _text(value: Any) -> str:
    """A bound value as ClickHouse's text format reads it (``param_`` values are text)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
