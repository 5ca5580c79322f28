"""The client side of the store endpoint: queries with bound parameters and a credential.

``remote_query`` posts SQL to ``{store}/query`` with ``Authorization: Bearer
<token>`` and each value as ``param_<name>`` (the SQL names it
``{name:Type}``), so no value is ever spliced into SQL text.

``store_endpoint(settings)`` is what a CLI command uses: the store's URL and
the tokens it resolves (``schemas.store_auth.resolve_token``: the environment,
else the files ``meterline up`` wrote).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meterline.schemas import Settings
from meterline.schemas.store_auth import auth_headers, query_url, resolve_token


class QueryError(Exception):
    """The query was refused or failed; the message is the store's (or ClickHouse's) own."""


@dataclass(frozen=True, slots=True)
class StoreEndpoint:
    """Where the store listens and the credentials this process found for it."""

    url: str
    read_token: str | None
    operator_token: str | None

    @property
    def query_token(self) -> str | None:
        """Queries go with the read credential; an operator's shell may only have its own."""
        return self.read_token or self.operator_token


def store_endpoint(settings: Settings) -> StoreEndpoint:
    return StoreEndpoint(url=f"http://{settings.store.host}:{settings.store.port}",
                         read_token=resolve_token(settings, "read"),
                         operator_token=resolve_token(settings, "operator"))


def remote_query(base_url: str, sql: str, fmt: str = "TabSeparatedWithNames",
                 timeout_s: float = 60.0, *, token: str | None,
                 parameters: Mapping[str, Any] | None = None) -> bytes:
    """Run ``sql`` on a store's query endpoint; ``QueryError`` with its message if refused."""
    request = urllib.request.Request(query_url(base_url, fmt, parameters), data=sql.encode(),
                                     method="POST", headers=auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        message = exc.read().decode("utf-8", errors="replace").strip()
        if exc.code == 401 and token is None:
            message += (" (no store token found: set METERLINE_STORE__READ_TOKEN, or run this "
                        "as the user whose `meterline up` wrote <data_dir>/store/read.token)")
        raise QueryError(message) from exc
    except urllib.error.URLError as exc:
        raise QueryError(f"the store at {base_url} is not reachable ({exc.reason}); is "
                         "`meterline up` running?") from exc
