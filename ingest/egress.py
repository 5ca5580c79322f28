"""The egress policy at the gateway: judge before the call leaves, ship messages after.

``EgressGate`` does three things for each call, in this order:

1. ``admit`` (request path, before anything leaves): the repo allowlist
   (``policy.rules``) and, in sensitive ``enforce`` mode, an inline scan of the
   messages not already known clean. A breach is recorded on the call; an
   enforced one raises ``PolicyRefused`` (403 in the client's API format, the
   rule named, what to do). The scan runs in a worker thread so the event loop
   keeps serving other calls (one scan thread; concurrent calls carrying the
   same new message share its scan); it uses the credential kinds only, which
   fit the gateway's memory budget (PII is scanned in the processors).
2. The call's messages are addressed by content (``policy.messages``): the
   envelope carries only the addresses.
3. ``ship`` (after the response ended): each message this process has not
   sent before is sealed (``policy.seal``) and produced to the audit-messages
   topic for the processors' scan, when the scan or the body policy needs the
   text. Best effort, never in the call's way: if the broker is down the
   message is dropped with a counted, logged (value-free) failure; the
   envelope, which is spooled, still carries its address.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from meterline.kafka import KafkaClients
from meterline.policy.messages import RequestMessage
from meterline.policy.rules import EgressPolicy
from meterline.policy.seal import Sealer
from meterline.schemas import AuditMessage, BodyPolicy, PolicyBreach, Settings, Topics

from .call import CallRecord
from .errors import PolicyRefused

log = logging.getLogger(__name__)


class EgressGate:
    """One per gateway process. ``admit`` on the request path, ``ship`` after the call."""

    def __init__(self, settings: Settings) -> None:
        egress = settings.egress
        self.policy = EgressPolicy.from_settings(settings)
        self._sensitive_mode = egress.sensitive.mode
        self._capacity = egress.seen_messages
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._clean: OrderedDict[str, None] = OrderedDict()
        self._scanner: Any = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="egress-scan")
        self._sealer = Sealer(egress.body_key.get_secret_value()) if egress.body_key else None
        self._producer: Producer | None = None
        self._topic = Topics(settings.kafka.topic_prefix).audit_messages
        self._kafka = settings.kafka
        self.shipped = 0
        self.ship_failures = 0
        if self._sealer is None and (self._sensitive_mode != "off" or _keeps_bodies(settings)):
            log.warning("egress.body_key is not set (METERLINE_EGRESS__BODY_KEY): messages are "
                        "not sent to the scan and no bodies are kept; breaches are still judged")
        if self._sensitive_mode == "enforce":
            from meterline.policy.sensitive import DEFAULT_SECRET_KINDS, SensitiveScanner

            kinds = [k for k in (egress.sensitive.kinds or DEFAULT_SECRET_KINDS)
                     if k in DEFAULT_SECRET_KINDS]
            self._scanner = SensitiveScanner(kinds)

    async def admit(self, call: CallRecord, messages: list[RequestMessage]) -> None:
        """Judge the call before it leaves; raise ``PolicyRefused`` if a rule enforces."""
        call.request_messages = [message.message_hash for message in messages]
        call.body_policy = self.policy.body_policy(call.repo, call.key.team)
        today = call.received_at.date()
        breach = self.policy.judge(repo=call.repo, team=call.key.team, user=call.key.user,
                                   provider=call.provider, model=call.served_model, today=today)
        if breach is not None:
            call.breaches.append(breach)
            if breach.enforced:
                raise PolicyRefused(f"Refused by {breach.detail}. Use a provider and model this "
                                    "repository allows, or ask your security team for an "
                                    f"exception to rule '{breach.rule}'.")
        if self._scanner is not None:
            await self._screen(call, messages)

    async def _screen(self, call: CallRecord, messages: list[RequestMessage]) -> None:
        unknown = [m for m in messages if m.message_hash not in self._clean and m.text]
        if not unknown:
            return
        found = [(m, await f) for m, f in [(m, self._scan_once(m)) for m in unknown]]
        today = call.received_at.date()
        blocking: list[str] = []
        for message, findings in found:
            kept = [f for f in findings if not self.policy.sensitive_excepted(
                f.kind, repo=call.repo, team=call.key.team, user=call.key.user, today=today)]
            if not kept:
                _remember(self._clean, message.message_hash, self._capacity)
                continue
            blocking.extend(f"{f.kind} in message {message.index} at characters "
                            f"{f.start}-{f.end}" for f in kept)
        if blocking:
            detail = "sensitive data in the prompt: " + "; ".join(blocking)
            call.breaches.append(PolicyBreach(rule="sensitive-data", kind="sensitive_data",
                                              detail=detail, enforced=True))
            raise PolicyRefused(f"Refused by egress rule 'sensitive-data': {detail}. Remove the "
                                "secret from the prompt (and rotate it: it was in your context), "
                                "or ask your security team for an exception.")

    def _scan_once(self, message: RequestMessage) -> asyncio.Future[Any]:
        """The scan of ``message``: one per address at a time, however many calls carry it.

        Scans run on one dedicated thread: regex matching holds the GIL, so
        more threads would only take turns and stall the event loop longer
        (measured by bench/egress_bench.py).
        """
        pending = self._pending.get(message.message_hash)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(
                self._executor, self._scanner.scan, message.text)
            self._pending[message.message_hash] = pending
            pending.add_done_callback(lambda _: self._pending.pop(message.message_hash, None))
        return pending

    def ship(self, call: CallRecord, messages: list[RequestMessage]) -> None:
        """Send the call's not-yet-sent messages to the scan (see the module docstring)."""
        policy: BodyPolicy = call.body_policy or "hash"
        if self._sealer is None or (self._sensitive_mode == "off"
                                    and policy not in ("redacted", "full")):
            return
        producer = self._ensure_producer()
        at = datetime.now(UTC)
        for message in messages:
            if message.message_hash in self._seen or not message.text:
                continue
            _remember(self._seen, message.message_hash, self._capacity)
            record = AuditMessage(
                message_hash=message.message_hash, request_id=call.request_id,
                index=message.index, role=message.role, chars=len(message.text),
                sealed=self._sealer.seal(message.text, message.message_hash), at=at,
                team=call.key.team, user=call.key.user, repo=call.repo, provider=call.provider,
                model=call.served_model, body_policy=policy, scan=self._sensitive_mode != "off")
            try:
                producer.produce(self._topic, orjson.dumps(record.model_dump(mode="json")),
                                 message.message_hash.encode(), on_delivery=self._on_delivery)
            except BufferError:
                self._seen.pop(message.message_hash, None)
                self.ship_failures += 1
        producer.poll(0)

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._producer = KafkaClients(self._kafka, role="gateway").producer(
                **{"enable.idempotence": False, "linger.ms": 20,
                   "queue.buffering.max.messages": 100_000})
        return self._producer

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.shipped += 1
            return
        self.ship_failures += 1
        key = message.key() or b""
        self._seen.pop(key.decode(), None)  # a later call resends it
        log.warning("audit message %s not delivered: %s", key.decode(), error)

    def close(self, timeout_s: float = 5.0) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._producer is not None:
            self._producer.flush(timeout_s)


def _keeps_bodies(settings: Settings) -> bool:
    policies = {settings.gateway.audit_body_policy, *(t.body_policy for t in settings.teams),
                *(r.body_policy for r in settings.egress.rules)}
    return bool(policies & {"redacted", "full"})


def _remember(cache: OrderedDict[str, None], key: str, capacity: int) -> None:
    cache[key] = None
    cache.move_to_end(key)
    while len(cache) > capacity:
        cache.popitem(last=False)
