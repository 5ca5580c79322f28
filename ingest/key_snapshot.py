"""The gateway's start-up read of every key's latest state from the store.

The registry topic is how changes reach a running gateway; ``key_events`` in
ClickHouse is their durable record. A gateway reads the latter once at
start-up (``load_key_states``), in the background, retrying while the store
is not up yet, so that after the embedded broker restarts empty (it keeps
nothing) a new gateway still refuses a revoked key and knows every minted
one. States are applied by version, so the topic and the snapshot can arrive
in any order.
"""

from __future__ import annotations

import asyncio
import logging

from meterline.governance.registry import LATEST_STATES_SQL, KeyRegistry
from meterline.schemas import KeySettings

from .ui.store_reader import StoreReader, StoreUnavailable

log = logging.getLogger(__name__)


async def load_key_states(registry: KeyRegistry, reader: StoreReader, *,
                          attempts: int = 30, interval_s: float = 2.0) -> int:
    """Apply ``key_events``' latest states; the number applied (0 if the store never answered)."""
    for attempt in range(attempts):
        try:
            rows = await reader.rows(LATEST_STATES_SQL.replace("{db}", ""))
        except StoreUnavailable as exc:
            if attempt == attempts - 1:
                log.warning("key states not read from the store (%s); following the registry "
                            "topic only", exc)
                return 0
            await asyncio.sleep(interval_s)
            continue
        applied = sum(registry.apply(KeySettings.model_validate_json(row["latest_state"]),
                                     int(row["latest_version"])) for row in rows)
        log.info("read %d key states from the store (%d newer than the topic's)", len(rows),
                 applied)
        return applied
    return 0
