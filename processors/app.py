"""The faust application of the anomaly detectors, and the settings faust apps share.

Only the detectors run on faust: their state lives in changelog-backed
tables, which is what faust is for. The enrichment worker is a confluent-kafka
batch loop (``processors.worker``): it keeps no state, and faust's
per-message consume path was most of its cost.
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
from .continuity import OffsetContinuity
from .egress import register_scan_agent

log = logging.getLogger(__name__)

#: Records per poll and per commit for the detectors' app.
BATCH_SIZE = 5000


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
        loghandlers=[_own_info_lines()],
    )


def _own_info_lines() -> logging.Handler:
    """A handler for this project's INFO lines in a faust process (they are few:
    assignments, table restores); faust's handler keeps WARNING and up, once."""
    logging.getLogger("meterline").setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda record: (record.levelno < logging.WARNING
                                      and record.name.startswith("meterline")))
    return handler


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
    guard_app(app, settings.kafka, [topics.events])
    continuity = OffsetContinuity(app)
    register_anomaly_agents(app, settings, topics, continuity)
    register_scan_agent(app, settings, topics, continuity)

    @app.on_partitions_assigned.connect
    async def log_assignment(sender: Any, /, *args: Any, signal: Any = None,
                             **kwargs: Any) -> None:
        assigned: set[Any] = args[0] if args else set()
        by_topic: dict[str, list[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        log.info("detector assigned %s", ", ".join(
            f"{topic}{sorted(partitions)}" for topic, partitions in sorted(by_topic.items())))
    return app
