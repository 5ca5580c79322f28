"""The faust application: envelopes in, events and dead letters out.

``create_worker_app`` builds the app from settings. The ``enrich`` agent takes
envelopes in batches (``take_events``) and, per batch:

1. turns each envelope into an event row with the pure ``event_row`` and
   queues it on the ``BatchEmitter`` keyed by request id; a poison envelope is
   queued to the dead-letter topic with its reason and source position instead;
2. waits until every message of the batch is acknowledged by the broker
   (``BatchEmitter.durable``).

Only then does ``take_events`` acknowledge the batch, so faust's commit never
moves past an envelope whose event or dead letter is not durable. Delivery
is at least once: a crash replays the uncommitted tail, and the sink stores
each request id once.

Speed: this agent is the pipeline's CPU hot spot. Validation is one pass of
pydantic's Rust validator, the event is a dict encoded by orjson (no second
model), prices come from cached affine forms (``public_prices``), and output
goes through librdkafka (``BatchEmitter``) rather than ``Topic.send`` or the
aiokafka producer, whose per-message futures, partitioner and batch
building in Python cost more than the enrichment. What remains is faust's
per-message consume path (aiokafka fetcher, conductor, stream buffer): see
bench/pipeline_bench.py for numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust

from meterline.embedded.faust_guards import guard_app
from meterline.kafka import KafkaClients
from meterline.schemas import Groups, Settings, Topics

from .anomaly import register_anomaly_agents
from .anomaly.agent import encode_anomaly
from .egress import breach_anomaly, register_scan_agent
from .emit import BatchEmitter
from .enrich import Directory, encode_event_row, event_row
from .errors import PoisonMessage
from .price_book import PriceBook
from .validate import parse_envelope

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
BATCH_WITHIN_S = 0.1


def worker_app_id(settings: Settings) -> str:
    """The worker's faust app id, which is also its consumer group id (``schemas.Groups``)."""
    return Groups(settings.kafka.topic_prefix).processors


def detector_app_id(settings: Settings) -> str:
    """The detector's app and group id; its tables' changelog topics are named after it."""
    return Groups(settings.kafka.topic_prefix).detectors


def faust_app(settings: Settings, app_id: str, role: str, web_port: int | None = None
              ) -> faust.App:
    """A faust app tuned for this pipeline: raw bytes in and out, lz4, acks=all.

    The worker (enrichment) and the detector (anomalies) are separate apps,
    each its own consumer group and process: see ``create_detector_app``.
    Brokers, credentials and static membership come from the Kafka seam.
    """
    session_s = settings.kafka.session_timeout_ms / 1000
    datadir = Path(settings.data_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return faust.App(
        app_id,
        **KafkaClients(settings.kafka, role=role).faust_options(),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir / app_id),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=min(1.0, session_s / 3),
        broker_rebalance_timeout=session_s,
        broker_commit_every=BATCH_SIZE,
        broker_commit_interval=1.0,
        broker_max_poll_records=BATCH_SIZE,
        producer_compression_type="lz4",
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_batch_size=1 << 20,
        producer_max_request_size=4 << 20,
        stream_buffer_maxsize=4 * BATCH_SIZE,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_host="127.0.0.1",
    )


def create_worker_app(settings: Settings, *, web_port: int | None = None) -> faust.App:
    """The enrichment app (``meterline worker``). Nothing connects until it starts."""
    topics = Topics(settings.kafka.topic_prefix)
    app = faust_app(settings, worker_app_id(settings), "worker", web_port)
    envelopes = app.topic(topics.envelopes, value_serializer="raw", key_serializer="raw")
    continuity = guard_app(app, settings.kafka, [topics.envelopes])
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})

    @app.agent(envelopes)
    async def enrich_envelopes(stream: Any) -> None:
        emitter = BatchEmitter(settings.kafka, role="worker")
        try:
            async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
                for event in batch:
                    message = event.message
                    continuity.check(message)
                    value: bytes = message.value
                    try:
                        envelope = parse_envelope(value)
                    except PoisonMessage as poison:
                        source = f"{message.topic}[{message.partition}]@{message.offset}"
                        log.warning("dead-lettering %s: %s", source, poison.reason)
                        emitter.dead_letter(message.key, value, poison.reason, source)
                        continue
                    emitter.event(envelope.request_id.encode(),
                                  encode_event_row(event_row(envelope, directory, book)))
                    if envelope.breaches:
                        breach = breach_anomaly(envelope)
                        if breach is not None:
                            emitter.anomaly(breach.anomaly_id.encode(), encode_anomaly(breach))
                await emitter.durable()  # step 2, before take_events acknowledges the batch
        finally:
            emitter.close()

    return app


def create_detector_app(settings: Settings, *, web_port: int | None = None) -> faust.App:
    """The anomaly detectors' app (``meterline detector``): events in, anomalies out.

    A process and consumer group of its own, apart from enrichment: its tables
    are restored from their changelogs on every start and rebalance, and
    while faust recovers them it holds back every stream of its app. In one app
    with enrichment, a restart with a fortnight of detector state stalled the
    enrich agent for minutes (see tests/e2e/test_anomalies.py). Apart, the money
    path (envelope → event → ClickHouse) never waits for anomaly detection.
    """
    app = faust_app(settings, detector_app_id(settings), "detector", web_port)
    topics = Topics(settings.kafka.topic_prefix)
    continuity = guard_app(app, settings.kafka, [topics.events])
    register_anomaly_agents(app, settings, topics, continuity)
    register_scan_agent(app, settings, topics, continuity)
    return app
