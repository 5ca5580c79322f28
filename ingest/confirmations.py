"""The gateway's reader of sink confirmations: truncates the spool behind the sink.

``ConfirmationReader`` follows the ``sink_watermarks`` topic (see
``meterline.schemas.watermark``) with a ``TopicFollower`` (every partition,
no group, re-read from the start when the embedded broker restarts empty) and
hands every confirmed request id to ``Spool.confirm``, then ``Spool.release``.

Where it starts reading: from the beginning when the spool held outstanding
envelopes at start-up (confirmations published while this gateway was down
must be seen, or those envelopes would be replayed needlessly), else from the
end. A lost confirmation only costs a duplicate on replay.

``caught_up`` is set once a poll comes back empty after assignment: the
replayer waits for it (briefly) before its start-up replay.
"""

from __future__ import annotations

import logging
from typing import Any

from meterline.kafka.follower import TopicFollower
from meterline.schemas import SCHEMA_VERSION_HEADER, KafkaSettings, Topics
from meterline.schemas.watermark import WATERMARK_SCHEMA_VERSION, decode_confirmations

from .spool import Spool

log = logging.getLogger(__name__)

RELEASE_INTERVAL_S = 1.0


class ConfirmationReader(TopicFollower):
    def __init__(self, kafka: KafkaSettings, spool: Spool, *, from_beginning: bool) -> None:
        super().__init__(kafka, Topics(kafka.topic_prefix).sink_watermarks,
                         from_beginning=from_beginning, role="gateway",
                         name="spool-confirmations")
        self._spool = spool
        self._next_release = 0.0

    def tick(self, now: float) -> None:
        if now >= self._next_release:
            self._spool.release()
            self._next_release = now + RELEASE_INTERVAL_S

    def apply(self, message: Any) -> None:
        headers = dict(message.headers() or [])
        version = headers.get(SCHEMA_VERSION_HEADER, b"").decode(errors="replace")
        if version.partition(".")[0] != WATERMARK_SCHEMA_VERSION.partition(".")[0]:
            log.warning("skipping confirmation %s[%d]@%d: schema_version %r",
                        message.topic(), message.partition(), message.offset(), version)
            return
        self._spool.confirm(decode_confirmations(message.value() or b""))
