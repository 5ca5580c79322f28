"""Sink errors.

    SinkError            base
    ├── StoreUnavailable ClickHouse cannot be reached or refused a write:
    │                    back off and retry, commit nothing meanwhile
    └── MigrationFailed  a schema migration failed: stop, the schema is unknown

clickhouse-connect's own exceptions are turned into these where they enter
(``store_errors``), so callers handle one tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import ClickHouseError


class SinkError(Exception):
    """Base of sink errors."""


class StoreUnavailable(SinkError):
    """ClickHouse did not take the operation; retrying later may succeed."""


class MigrationFailed(SinkError):
    """A migration could not be applied."""


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Re-raise clickhouse-connect errors as ``StoreUnavailable`` naming ``what``."""
    try:
        yield
    except ClickHouseError as exc:
        raise StoreUnavailable(f"{what}: {exc}") from exc
