"""Envelope emission: every envelope spooled, produced, and accounted for, fail-open.

``EnvelopeEmitter.emit`` is called once per call, after the response is done,
on the event loop. It never blocks on the network or the disk and never raises
into the request. It:

1. appends the envelope to the spool (``ingest.spool``): once this returns the
   envelope survives the gateway being killed, and stays until the sink
   confirms it is stored in ClickHouse;
2. in *direct* mode, hands it to librdkafka's bounded queue; in *spool-only*
   mode (broker down, queue full, a replay under way) it does not: the
   replayer produces it from the spool, in order, when its turn comes.

Every envelope ends in exactly one of the counters' buckets: ``delivered`` or
``failed`` (broker acknowledgement, per produce attempt, replays included),
and ``dropped`` for the only loss the gateway accepts: the spool was full or
failed *and* the produce failed too, logged with its request id.

Anything that may have lost envelopes (a failed delivery, a full queue, all
brokers down, a fatal producer error, offsets going backwards because the
broker restarted empty) calls ``spool_only(reason)``: the replayer
(``ingest.replay``) waits for the broker, then rewinds to the first
unconfirmed envelope and replays everything after it. Duplicates are harmless:
every stage counts a request id once.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from meterline.kafka import KafkaClients, policy_for
from meterline.schemas import SCHEMA_VERSION_HEADER, Envelope, GatewaySettings, KafkaSettings, Topics
from meterline.schemas.watermark import request_id_bytes

from .confirmations import ConfirmationReader
from .replay import Replayer
from .spool import Spool, SpoolError, SpoolStats

log = logging.getLogger(__name__)

#: librdkafka's queue bound: past it ``produce`` raises BufferError and we spool only.
QUEUE_MAX_MESSAGES = 100_000


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Durable producer settings: idempotent, acks from all replicas, lz4 batches.

    ``message.timeout.ms`` is short because the spool, not librdkafka's queue,
    is what rides out an outage: a message that cannot be delivered in 30 s
    fails, and the replay brings it back from the spool once the broker is up.
    """
    return KafkaClients(kafka, role="gateway").producer_config(**{
        # idempotent on either broker: a rewind replaces the producer (``replace_producer``),
        # so the embedded broker never sees a restarted producer's old session
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
        "queue.buffering.max.kbytes": 256 * 1024,
        "message.timeout.ms": 30_000,
        "reconnect.backoff.max.ms": 1000,
    })


class EnvelopeEmitter:
    """Spools and produces envelopes; see the module docstring for the contract."""

    def __init__(self, kafka: KafkaSettings, gateway: GatewaySettings | None = None) -> None:
        gateway = gateway or GatewaySettings()
        self._kafka = kafka
        self._topic = Topics(kafka.topic_prefix).envelopes
        self.produced = self.delivered = self.failed = self.dropped = 0
        self.spooled = self.replayed = self.rewinds = self.spool_errors = 0
        self._lock = threading.Lock()
        self._direct = True
        self._rewind_reason = ""
        self._epoch = 0
        self._last_offsets: dict[int, int] = {}
        self.queue_limit = QUEUE_MAX_MESSAGES
        self.spool = Spool(Path(gateway.spool_dir), segment_bytes=gateway.spool_segment_bytes,
                           segment_max_age_s=gateway.spool_segment_max_age_s,
                           max_bytes=gateway.spool_max_bytes,
                           alarm_ratio=gateway.spool_alarm_ratio,
                           fsync_interval_s=gateway.spool_fsync_interval_s,
                           unconfirmed_grace_s=gateway.spool_unconfirmed_grace_s)
        recovered = self.spool.stats().depth
        self._producer = self._new_producer()
        self._confirmations = ConfirmationReader(kafka, self.spool, from_beginning=recovered > 0)
        create_topics = (policy_for(kafka).create_missing_topics
                         if gateway.create_missing_topics is None
                         else gateway.create_missing_topics)
        self._replayer = Replayer(self, kafka, create_topics=create_topics,
                                  confirmations_caught_up=self._confirmations.caught_up)
        if recovered:
            self.spool_only(f"{recovered} envelopes recovered from the spool")
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="envelope-poll", daemon=True)
        self._poller.start()
        self._confirmations.start()
        self._replayer.start()

    def _new_producer(self) -> Producer:
        return Producer({**producer_config(self._kafka), "error_cb": self._on_error})

    # -- the request path -------------------------------------------------------------------

    def emit(self, envelope: Envelope) -> None:
        """Spool, then produce if in direct mode. Never raises, never waits on I/O."""
        value = envelope.model_dump_json().encode()
        key = envelope.key_id.encode()
        seq: int | None = None
        with self._lock:
            try:
                seq = self.spool.append(request_id_bytes(envelope.request_id), value)
                self.spooled += 1
            except (SpoolError, OSError, ValueError) as exc:
                self.spool_errors += 1
                log.error("envelope request_id=%s not spooled: %s", envelope.request_id, exc)
            direct = self._direct or seq is None
        if direct:
            self.produce(seq, key, value, envelope.schema_version.encode(),
                         request_id=envelope.request_id)

    def produce(self, seq: int | None, key: bytes, value: bytes, version: bytes, *,
                request_id: str, replay: bool = False) -> bool:
        """Hand one envelope to librdkafka; False (and spool-only mode) if it refused."""
        try:
            self._producer.produce(
                self._topic, value=value, key=key, headers={SCHEMA_VERSION_HEADER: version},
                on_delivery=functools.partial(self._on_delivery, seq, request_id, self._epoch))
        except (BufferError, KafkaException) as exc:
            if seq is None:
                self.dropped += 1
                log.error("envelope request_id=%s lost: not spooled and not produced (%s)",
                          request_id, exc)
            self.spool_only(f"produce refused: {exc!r}")
            return False
        self.produced += 1
        if replay:
            self.replayed += 1
        return True

    # -- delivery accounting ----------------------------------------------------------------

    def _on_delivery(self, seq: int | None, request_id: str, epoch: int,
                     error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.delivered += 1
            partition, offset = message.partition(), message.offset()
            previous = self._last_offsets.get(partition, -1)
            self._last_offsets[partition] = offset
            if offset <= previous:
                # Offsets only grow on a log that survives; lower ones mean the broker
                # came back empty, and everything it held but the sink had not stored is gone.
                self._last_offsets.clear()
                self.spool_only(f"{self._topic}[{partition}] offset went back from {previous} "
                                 f"to {offset}: the broker restarted empty")
            return
        self.failed += 1
        if seq is None:
            self.dropped += 1
            log.error("envelope request_id=%s lost: not spooled, delivery failed: %s",
                      request_id, error)
        elif epoch == self._epoch:
            self.spool_only(f"delivery failed: {error}")

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.spool_only(f"fatal producer error: {error}")
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.spool_only("all brokers down")
        else:
            log.warning("kafka producer: %s", error)

    def spool_only(self, reason: str) -> None:
        """Stop producing directly; the replayer rewinds once the broker is back."""
        with self._lock:
            first = self._direct or not self._rewind_reason
            self._direct = False
            self._rewind_reason = self._rewind_reason or reason
        if first:
            log.warning("envelopes spool-only until the broker is back: %s", reason)

    # -- the replayer's side (ingest.replay) --------------------------------------------------

    def take_rewind(self) -> str:
        """The pending rewind reason (cleared), starting a new delivery epoch if any."""
        with self._lock:
            reason, self._rewind_reason = self._rewind_reason, ""
            if reason:
                self._epoch += 1
                self.rewinds += 1
                # The replay re-produces everything unconfirmed: offsets seen before
                # it must not make its own deliveries look like another restart.
                self._last_offsets.clear()
            return reason

    def finish_replay(self, cursor: int) -> bool:
        """Back to direct mode if nothing outstanding is at or after ``cursor``."""
        with self._lock:
            if self._rewind_reason or self.spool.outstanding_from(cursor, 1):
                return False
            self._direct = True
            return True

    def replace_producer(self) -> None:
        """A fresh producer for a rewind; the old one's queue is purged (it is all spooled).

        Why not keep the old one: after the broker restarted empty, librdkafka's
        idempotent producer keeps a producer id and sequence numbers the new
        broker never issued, and its messages time out instead of being
        delivered (observed with tansu); after a fatal error it is unusable.
        """
        with self._lock:
            old, self._producer = self._producer, self._new_producer()
        old.purge()
        # Destroying a producer waits for its broker connections: not on this thread.
        threading.Thread(target=old.flush, args=(1.0,), name="producer-retire",
                         daemon=True).start()

    def queued(self) -> int:
        return len(self._producer)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except KafkaException as exc:
                # confluent-kafka raises a fatal error from poll() instead of calling
                # error_cb (seen after a tansu restart): were this thread to die, no
                # delivery report would be served again and the queue would only grow.
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError):
                    self._on_error(error)
                else:
                    self.spool_only(f"producer poll failed: {exc}")

    # -- health and shutdown ----------------------------------------------------------------

    def broker_reachable(self, timeout_s: float) -> bool:
        """Whether the broker answers a metadata request within ``timeout_s``."""
        try:
            self._producer.list_topics(self._topic, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def pending(self) -> int:
        """Envelopes in librdkafka's queue, not yet acknowledged by the broker."""
        return len(self._producer)

    def stats(self) -> dict[str, int | bool]:
        """Counters and spool state for /readyz and the metrics."""
        spool: SpoolStats = self.spool.stats()
        return {
            "produced": self.produced, "delivered": self.delivered, "failed": self.failed,
            "dropped": self.dropped, "spooled": self.spooled, "replayed": self.replayed,
            "rewinds": self.rewinds, "spool_errors": self.spool_errors,
            "direct": self._direct, "queued": self.pending(),
            "spool_depth": spool.depth, "spool_bytes": spool.bytes,
            "spool_max_bytes": spool.max_bytes, "spool_segments": spool.segments,
            "spool_alarm": spool.alarm, "spool_unsynced": spool.unsynced,
            "spool_confirmed": spool.confirmed, "spool_quarantined": spool.quarantined,
            "spool_abandoned": spool.abandoned, "spool_fsyncs": spool.fsyncs,
            "replay_rate_per_s": int(self._replayer.last_replay_rate),
        }

    @property
    def spool_depth(self) -> int:
        return self.spool.stats().depth

    def close(self, timeout_s: float = 10.0) -> int:
        """Stop replaying, flush what is queued, fsync the spool.

        Returns the number of envelopes that are neither delivered nor spooled
        (lost). Undelivered envelopes that are spooled are not lost: the next
        start replays them.
        """
        self._replayer.close()
        self._stop.set()
        self._poller.join()
        undelivered: int = self._producer.flush(timeout_s)
        if undelivered:
            log.warning("%d envelopes undelivered at shutdown; they stay in the spool",
                        undelivered)
        self._confirmations.close()
        self.spool.close()
        return self.dropped
