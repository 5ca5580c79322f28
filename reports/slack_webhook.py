"""Posting a Block Kit message to a Slack incoming webhook, with retries.

``SlackWebhook.post`` blocks until Slack has accepted the message or the retry
budget is spent. Which failures are retried:

- connection errors and timeouts (Slack unreachable): back off and retry;
- 429 (rate limited): wait ``Retry-After`` (capped at ``retry_max_s``), retry;
- 5xx: back off and retry;
- any other status (400 ``invalid_payload``, 403, 404 ``no_service``): the
  request will not improve by repeating it, so ``DeliveryFailed`` at once.

Backoff is exponential with full jitter: attempt *n* waits a random time up to
``min(retry_max_s, retry_base_s * 2**n)``. slack-sdk's ``WebhookClient`` does
the HTTP; its own retry handlers are left out because its rate-limit handler
always sleeps at least a second more than ``Retry-After``, and its server-error
handler ignores 502 and 504.

The webhook URL is a secret: it never appears in a log line or an error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk.webhook import WebhookClient

from meterline.schemas import BudgetSettings

from .errors import DeliveryFailed

log = logging.getLogger(__name__)


class SlackWebhook:
    """One team's incoming webhook. Thread-safe: each post is one independent request."""

    def __init__(self, url: str, settings: BudgetSettings, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = WebhookClient(url, timeout=max(1, round(settings.send_timeout_s)),
                                     retry_handlers=[])
        self._attempts = settings.retry_attempts
        self._base_s = settings.retry_base_s
        self._max_s = settings.retry_max_s
        self._sleep = sleep

    def post(self, text: str, blocks: list[dict[str, Any]], *, what: str) -> int:
        """Deliver the message; returns the attempts it took. ``DeliveryFailed`` if it could not.

        ``what`` names the alert in log lines (never the URL).
        """
        problem = "no attempt made"
        wait_hint_s: float | None = None
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._delay_s(attempt, wait_hint_s))
            wait_hint_s = None
            try:
                response = self._client.send(text=text, blocks=blocks)
            except (URLError, OSError) as exc:
                problem = f"Slack unreachable ({_reason(exc)})"
            else:
                status = response.status_code
                if status == 200:
                    return attempt + 1
                problem = f"Slack answered {status} {response.body[:200]!r}"
                if status == 429:
                    wait_hint_s = _retry_after_s(response.headers)
                elif status < 500:
                    raise DeliveryFailed(f"{what}: {problem}; not retried")
            log.warning("%s: attempt %d/%d failed: %s", what, attempt + 1, self._attempts, problem)
        raise DeliveryFailed(f"{what}: gave up after {self._attempts} attempts: {problem}")

    def _delay_s(self, attempt: int, wait_hint_s: float | None) -> float:
        if wait_hint_s is not None:
            return min(self._max_s, wait_hint_s)
        return random.uniform(0, min(self._max_s, self._base_s * 2 ** attempt))


def _retry_after_s(headers: Any) -> float | None:
    """Slack's ``Retry-After`` in seconds, if it sent a usable one."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(text))
            except ValueError:
                return None
    return None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc.__class__.__name__)
