"""Read-only queries against the store's query endpoint, from inside the gateway's event loop.

The gateway never opens ClickHouse: with embedded chdb only the store process
may (docs/architecture.md), so the dashboard reads exactly as ``meterline sql``
does: ``POST {store}/query?format=JSONEachRow&param_<name>=<value>`` with the
SQL as the body and the read credential (``Authorization: Bearer``, the token
from ``store.read_token`` or ``up``'s token file, looked up per page so a
store restarted with new tokens is followed). Values are bound parameters
(``{team:String}`` in the SQL), never spliced in. The endpoint is read-only.

The client is aiohttp (already the gateway's upstream client) rather than
``urllib``, because a blocking call here would stall every proxied request
sharing the event loop while a page query runs.

Decimals are parsed as ``Decimal`` (``parse_float``), so a cost shown or
exported by the UI is the ledger's exact figure, never a float's neighbour.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp

from meterline.schemas.store_auth import auth_headers, query_url

Row = dict[str, Any]
#: One query: its SQL and the values of the ``{name:Type}`` parameters it names.
Query = tuple[str, Mapping[str, Any]]


class StoreUnavailable(RuntimeError):
    """The store did not answer, or refused a query; the message is shown on the page."""


class StoreReader:
    """Runs SELECTs on the store; one short-lived HTTP session per page."""

    def __init__(self, store_url: str, *, token: Callable[[], str | None],
                 timeout_s: float = 30.0) -> None:
        self.store_url = store_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def many(self, queries: Sequence[Query]) -> list[list[Row]]:
        """Rows of each query, run concurrently (a page's tables load in parallel)."""
        headers = auth_headers(self._token())
        async with aiohttp.ClientSession(timeout=self._timeout, headers=headers) as session:
            return list(await asyncio.gather(*(self._one(session, sql, params)
                                               for sql, params in queries)))

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return (await self.many([(sql, params or {})]))[0]

    async def _one(self, session: aiohttp.ClientSession, sql: str,
                   params: Mapping[str, Any]) -> list[Row]:
        url = query_url(self.store_url, "JSONEachRow", params)
        try:
            async with session.post(url, data=sql.encode()) as response:
                body = await response.text()
                if response.status != 200:
                    raise StoreUnavailable(f"The store refused a dashboard query: {body.strip()[:300]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnavailable(f"The store at {self.store_url} is not reachable "
                                   f"({type(exc).__name__}); is the store role running?") from exc
        return [json.loads(line, parse_float=Decimal) for line in body.splitlines() if line]
