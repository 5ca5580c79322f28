"""Read-only queries against the store's query endpoint, from inside the gateway's event loop.

The gateway never opens ClickHouse: with embedded chdb only the store process
may (docs/architecture.md), so the dashboard reads exactly as ``meterline sql``
does, ``POST {store}/query?format=JSONEachRow`` with the SQL as the body. That
endpoint runs with ``readonly=2``, so nothing the UI sends can write.

The client is aiohttp (already the gateway's upstream client) rather than
``urllib``, because a blocking call here would stall every proxied request
sharing the event loop while a page query runs.

Decimals are parsed as ``Decimal`` (``parse_float``), so a cost shown or
exported by the UI is the ledger's exact figure, never a float's neighbour.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import aiohttp

Row = dict[str, Any]


class StoreUnavailable(RuntimeError):
    """The store did not answer, or refused a query; the message is shown on the page."""


class StoreReader:
    """Runs SELECTs on the store; one short-lived HTTP session per page."""

    def __init__(self, store_url: str, *, timeout_s: float = 30.0) -> None:
        self.store_url = store_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def many(self, queries: Sequence[str]) -> list[list[Row]]:
        """Rows of each query, run concurrently (a page's tables load in parallel)."""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            return list(await asyncio.gather(*(self._one(session, sql) for sql in queries)))

    async def rows(self, sql: str) -> list[Row]:
        return (await self.many([sql]))[0]

    async def _one(self, session: aiohttp.ClientSession, sql: str) -> list[Row]:
        url = f"{self.store_url}/query?format=JSONEachRow"
        try:
            async with session.post(url, data=sql.encode()) as response:
                body = await response.text()
                if response.status != 200:
                    raise StoreUnavailable(f"The store refused a dashboard query: {body.strip()[:300]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnavailable(f"The store at {self.store_url} is not reachable "
                                   f"({type(exc).__name__}); is the store role running?") from exc
        return [json.loads(line, parse_float=Decimal) for line in body.splitlines() if line]
