"""The anomaly agents: events in, findings out on the anomalies topic.

Three agents, registered on the processors' app by ``register_anomaly_agents``:

1. ``route`` reads the events topic (keyed by request id), reduces each
   event to an ``Observation`` and re-keys it by team onto an internal topic,
   and sums each batch's calls per provider and window into
   ``ProviderTally`` messages keyed by provider (``Rekeyer``, librdkafka,
   durable per batch). This is the repartition that co-locates
   all of a team's (a provider's) events and detector state on one
   partition, so state survives rebalances: the partition moves with its
   changelog.
2. ``detect_team`` runs ``TeamDetectors`` over the team-keyed stream, in
   batches, with a faust table (``store="memory://"``, changelog-backed) as
   its state, seen through a ``TableBuffer`` so each changed key goes to the
   changelog once per batch, not once per call. On assignment, faust replays
   the changelog partition into the table before the agent sees an event,
   which is how state survives restarts.
3. ``detect_provider`` does the same with the tallies for ``ProviderDetectors``
   (error bursts).

Findings go to the anomalies topic as ``Anomaly`` JSON, keyed by anomaly id.

Guarantees: at least once, like the enrich agent. A batch's changelog writes
and findings are queued before the batch is acknowledged, and faust flushes
its producer before committing offsets, so neither is ever lost; a crash
re-processes the uncommitted tail, which re-emits the same anomaly ids
(deduplicated by every consumer) and may count those calls twice in the
detectors' running state, a bounded and conservative error.

An event the detectors cannot read (missing or malformed fields) is a poison
message: the routing agent sends it to the dead-letter topic with its reason
and skips it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import faust
import orjson

from meterline.kafka import policy_for
from meterline.schemas import (
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    Anomaly,
    Settings,
    Topics,
)

from ..continuity import ContinuityCheck
from ..emit import ANOMALY_HEADERS
from .detectors import ProviderDetectors, TeamDetectors
from .error_burst import ProviderTally, tally
from .observation import Observation
from .rekey import Rekeyer
from .state import State
from .table_buffer import CHANGELOG_END_KEY, TableBuffer, end_changelog_batches

log = logging.getLogger(__name__)

BATCH_SIZE = 2000
BATCH_WITHIN_S = 0.1


def register_anomaly_agents(app: faust.App, settings: Settings, topics: Topics,
                            continuity: ContinuityCheck) -> None:
    """Add the routing and detector agents and their tables to ``app`` (if enabled).

    ``continuity`` is the app's offset check (``processors/continuity.py``).
    """
    if not settings.anomalies.enabled:
        return
    partitions = settings.kafka.partitions
    events = app.topic(topics.events, value_serializer="raw", key_serializer="raw")
    by_team = app.topic(topics.anomaly_by_team, internal=True,
                        partitions=partitions, value_serializer="raw", key_serializer="raw")
    by_provider = app.topic(topics.anomaly_by_provider, internal=True,
                            partitions=partitions, value_serializer="raw", key_serializer="raw")
    anomalies_topic = topics.anomalies
    dead_letters_topic = topics.dead_letters
    # The changelogs are named after the app id, which carries the topic prefix
    # (``detector_app_id``): deployments sharing a broker do not share them.
    json_schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    team_state = app.Table("anomaly-team", partitions=partitions, schema=json_schema)
    provider_state = app.Table("anomaly-provider", partitions=partitions, schema=json_schema)
    for table in (team_state, provider_state):
        table.on_recover(_recovery_logger(table))
    end_batches = policy_for(settings.kafka).end_changelog_batches
    team_detectors = TeamDetectors(settings)
    provider_detectors = ProviderDetectors(settings)

    @app.agent(events)
    async def route_events_for_anomalies(stream: Any) -> None:
        rekeyer = Rekeyer(settings.kafka, role="detector", by_team=by_team.get_topic_name(),
                          by_provider=by_provider.get_topic_name(),
                          dead_letters=dead_letters_topic)
        try:
            async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
                observations = []
                for event in batch:
                    message = event.message
                    continuity.check(message)
                    try:
                        observation = Observation.from_row(orjson.loads(message.value))
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        rekeyer.dead_letter(message.key, message.value,
                                            f"event unreadable for anomaly detection: {exc!r}",
                                            _source(message))
                        continue
                    observations.append(observation)
                    rekeyer.to_team(observation.team, observation.to_wire())
                for counted in tally(observations, provider_detectors.window_minutes):
                    rekeyer.to_provider(counted.provider, counted.to_wire())
                await rekeyer.durable()  # before take_events acknowledges the batch
        finally:
            rekeyer.close()

    async def detect(stream: Any, table: Any,
                     observe: Callable[[bytes, State], list[Anomaly]]) -> None:
        producer = app.producer
        state = TableBuffer(table)
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            deliveries = []
            for event in batch:
                message = event.message
                continuity.check(message)
                state.partition = message.partition
                try:
                    found = observe(message.value, state)
                except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                    deliveries.append(await send_dead_letter(
                        producer, dead_letters_topic, message,
                        f"unreadable by the anomaly detectors: {exc!r}"))
                    continue
                for anomaly in found:
                    deliveries.append(await send_anomaly(producer, anomalies_topic, anomaly))
            state.flush()  # each changed key once, before the batch is acknowledged
            await asyncio.gather(*deliveries)
            if end_batches:  # the embedded broker's high watermark: see table_buffer
                await end_changelog_batches(producer, table, state.partitions_written)

    @app.agent(by_team)
    async def detect_team_anomalies(stream: Any) -> None:
        await detect(stream, team_state, lambda value, state: team_detectors.observe(
            Observation.from_wire(value), state))

    @app.agent(by_provider)
    async def detect_provider_anomalies(stream: Any) -> None:
        await detect(stream, provider_state, lambda value, state: provider_detectors.observe_tally(
            ProviderTally.from_wire(value), state))


def _recovery_logger(table: Any) -> Callable[[], Any]:
    """A callback for ``table.on_recover``: one line with the keys restored, so a
    detector that starts with less state than it had (a missed finding later) shows it."""
    async def recovered() -> None:
        keys = [key for key in table.data if key != CHANGELOG_END_KEY]
        log.info("table %s restored from its changelog: %d keys", table.name, len(keys))
    return recovered


def encode_anomaly(anomaly: Anomaly) -> bytes:
    """The anomalies topic's value: the model's JSON (times RFC 3339, UTC)."""
    return anomaly.model_dump_json().encode()


async def send_anomaly(producer: Any, topic: str, anomaly: Anomaly) -> Any:
    """Log a finding and send it with faust's producer; the delivery future to await."""
    log.info("anomaly %s %s %s/%s: %s", anomaly.anomaly_id, anomaly.kind,
             anomaly.entity_kind, anomaly.entity, anomaly.summary)
    return await producer.send(topic, anomaly.anomaly_id.encode(), encode_anomaly(anomaly),
                               None, None, ANOMALY_HEADERS)


def _source(message: Any) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


async def send_dead_letter(producer: Any, topic: str, message: Any, reason: str) -> Any:
    """Send ``message`` to the dead-letter topic with its reason and source position;
    the delivery future to await."""
    source = _source(message)
    log.warning("dead-lettering %s: %s", source, reason)
    return await producer.send(topic, message.key, message.value, None, None,
                               [(DEAD_LETTER_REASON_HEADER, reason.encode()),
                                (DEAD_LETTER_SOURCE_HEADER, source.encode())])
