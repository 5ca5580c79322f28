"""The egress policy in the stream: breach findings, and the audit-mode scan of messages.

Two pure functions and one agent:

- ``breach_anomaly(envelope)``: the ``policy_breach`` finding of a call that
  broke an egress rule (not excepted). The enrich agent emits it next to the
  event. Its id is per (rule, repo, provider, hour), so a repo breaking a
  rule all day is one finding an hour, not one per call.
- ``scan_message(record, ...)``: open a sealed ``AuditMessage``, scan it for
  secrets and personal data (``policy.sensitive``), and return the
  ``MessageScan`` for the store (findings as kind and place, and the text only
  as its body policy keeps it: ``redacted`` or ``full``) plus, when something
  not excepted was found, a ``sensitive_data`` finding per user and hour.
- ``register_scan_agent``: the faust agent on the audit-messages topic, in the
  detector's app (off the money path, like anomaly detection). A message it
  cannot open or read is dead-lettered with its reason (its value stays
  sealed).

The message text exists in clear only in this process's memory while it is
scanned; what leaves is the ``MessageScan``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import faust
import orjson
from pydantic import ValidationError

from meterline.policy.rules import EgressPolicy
from meterline.policy.seal import Sealer, SealError
from meterline.policy.sensitive import DEFAULT_KINDS, SensitiveScanner, redact
from meterline.schemas import (
    Anomaly,
    AuditMessage,
    Envelope,
    MessageScan,
    SensitiveSpan,
    Settings,
    Topics,
)

from .anomaly.agent import send_anomaly, send_dead_letter
from .continuity import ContinuityCheck

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WITHIN_S = 0.2


def breach_anomaly(envelope: Envelope) -> Anomaly | None:
    """The ``policy_breach`` finding of ``envelope``, or None if it broke no rule."""
    broken = [breach for breach in envelope.breaches if not breach.excepted]
    if not broken:
        return None
    breach = broken[0]
    hour = envelope.received_at.replace(minute=0, second=0, microsecond=0)
    repo = envelope.repo or "(none)"
    verb = "refused" if breach.enforced else "sent (audit mode)"
    return Anomaly.build(
        kind="policy_breach", severity="critical" if breach.kind == "sensitive_data" else "warning",
        team=envelope.team, entity_kind="repo", entity=f"{breach.rule}:{repo}:{envelope.provider}",
        unit="calls", observed=1, expected=0, threshold=0, window_start=hour,
        window_end=hour + timedelta(hours=1), detected_at=envelope.received_at,
        summary=f"{envelope.user}'s call {verb}: {breach.detail}",
        evidence={"rule": breach.rule, "breach": breach.kind, "repo": envelope.repo,
                  "provider": envelope.provider, "model": envelope.served_model,
                  "user": envelope.user, "key_id": envelope.key_id,
                  "request_id": envelope.request_id, "enforced": int(breach.enforced)})


def scan_message(record: AuditMessage, scanner: SensitiveScanner, sealer: Sealer,
                 policy: EgressPolicy) -> tuple[MessageScan, Anomaly | None]:
    """Scan one message; ``SealError`` if it does not open with this key."""
    text = sealer.open(record.sealed, record.message_hash)
    found = scanner.scan(text) if record.scan else []
    today = record.at.date()
    spans = [SensitiveSpan(kind=f.kind, category=f.category, detector=f.detector, start=f.start,
                           end=f.end, excepted=policy.sensitive_excepted(
                               f.kind, repo=record.repo, team=record.team, user=record.user,
                               today=today))
             for f in found]
    kept = None
    if record.body_policy == "full":
        kept = text
    elif record.body_policy == "redacted":
        kept = redact(text, found)
    scan = MessageScan(**record.model_dump(exclude={"sealed", "scan"}), findings=spans,
                       text=kept)
    live = [span for span in spans if not span.excepted]
    if not live:
        return scan, None
    kinds = sorted({span.kind for span in live})
    hour = record.at.replace(minute=0, second=0, microsecond=0)
    secret = any(span.category == "secret" for span in live)
    anomaly = Anomaly.build(
        kind="sensitive_data", severity="critical" if secret else "warning", team=record.team,
        entity_kind="user", entity=record.user, unit="findings", observed=len(live), expected=0,
        threshold=0, window_start=hour, window_end=hour + timedelta(hours=1),
        detected_at=record.at,
        summary=(f"{', '.join(kinds)} in a prompt {record.user} sent to {record.provider} "
                 f"({record.model}) from {record.repo or 'no repository'}: message "
                 f"{record.index} of call {record.request_id}"),
        evidence={"user": record.user, "repo": record.repo, "provider": record.provider,
                  "model": record.model, "request_id": record.request_id,
                  "message_hash": record.message_hash, "kinds": ",".join(kinds)})
    return scan, anomaly


def register_scan_agent(app: faust.App, settings: Settings, topics: Topics,
                        continuity: ContinuityCheck) -> None:
    """Add the audit-mode scan (audit messages → message scans, anomalies) to ``app``."""
    egress = settings.egress
    if egress.body_key is None:
        log.warning("egress.body_key is not set: the sensitive-data scan is off")
        return
    sealer = Sealer(egress.body_key.get_secret_value())
    policy = EgressPolicy.from_settings(settings)
    scanner = SensitiveScanner(egress.sensitive.kinds or DEFAULT_KINDS)
    source = app.topic(topics.audit_messages, value_serializer="raw", key_serializer="raw")
    scans_topic, anomalies_topic = topics.message_scans, topics.anomalies
    dead_letters_topic = topics.dead_letters

    @app.agent(source)
    async def scan_audit_messages(stream: Any) -> None:
        producer = app.producer
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            deliveries = []
            for event in batch:
                message = event.message
                continuity.check(message)
                try:
                    record = AuditMessage.model_validate_json(message.value)
                    scan, anomaly = scan_message(record, scanner, sealer, policy)
                except (ValidationError, SealError) as exc:
                    deliveries.append(await send_dead_letter(
                        producer, dead_letters_topic, message,
                        f"audit message unreadable: {type(exc).__name__}"))
                    continue
                deliveries.append(await producer.send(
                    scans_topic, record.message_hash.encode(),
                    orjson.dumps(scan.model_dump(mode="json")), None, None, None))
                if anomaly is not None:
                    deliveries.append(await send_anomaly(producer, anomalies_topic, anomaly))
            for delivery in deliveries:
                await delivery  # before take_events acknowledges the batch
