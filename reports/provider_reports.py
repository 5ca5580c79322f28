"""The providers' own usage and cost reports, read through their admin APIs.

``fetch_report`` reads one provider's reports for a range of UTC days and
answers them in one shape, whichever provider it was:

- **usage** per (day, model, API key, project or workspace), in the ledger's
  token convention: ``input`` is uncached input. OpenAI's ``input_tokens``
  include ``input_cached_tokens``, so they are taken apart; Anthropic reports
  ``uncached_input_tokens`` and each cache-write duration itself.
- **costs** per (day, model, project or workspace), as the provider bills them: OpenAI in dollars
  (a JSON number, read as a ``Decimal`` so nothing is rounded), Anthropic in
  cents (a decimal string).
- **keys**: each API key's id and the redacted hint the provider shows of it,
  so the reconciler can tell the gateway's own keys from keys it never saw.

The endpoints (OpenAI: ``/v1/organization/usage/completions``,
``/usage/embeddings``, ``/costs``, ``/projects/{id}/api_keys``; Anthropic:
``/v1/organizations/usage_report/messages``, ``/cost_report``, ``/api_keys``)
are paged; every page is read. They take an admin key, never an API key.
Failures raise ``ProviderReportUnavailable`` naming the endpoint, never the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from .errors import ProviderReportUnavailable

#: Days per page: the providers' maximum for daily buckets.
_PAGE_DAYS = 31
_ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts in the ledger's convention (``input`` excludes cache reads and writes)."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.input + other.input, self.cache_read + other.cache_read,
                      self.cache_write + other.cache_write, self.output + other.output)

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(self.input - other.input, self.cache_read - other.cache_read,
                      self.cache_write - other.cache_write, self.output - other.output)

    def largest(self) -> int:
        """The largest count, in absolute value (of a difference: how far apart)."""
        return max(abs(self.input), abs(self.cache_read), abs(self.cache_write),
                   abs(self.output))


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    day: date
    model: str
    api_key_id: str
    scope: str  # the OpenAI project or Anthropic workspace
    tokens: Tokens
    #: The cache writes by duration, for pricing (Anthropic bills 1-hour writes higher).
    cache_write_1h: int = 0


@dataclass(slots=True)
class ProviderReport:
    """One provider's reports over a range of days."""

    kind: str
    usage: list[ReportedUsage] = field(default_factory=list)
    #: (day, model, project or workspace) → what the provider billed.
    costs: dict[tuple[date, str, str], Decimal] = field(default_factory=dict)
    #: API key id → the provider's redacted hint of it (``sk-abc...wxyz``).
    keys: dict[str, str] = field(default_factory=dict)

    def add_cost(self, day: date, model: str, scope: str, amount: Decimal) -> None:
        key = (day, model, scope)
        self.costs[key] = self.costs.get(key, Decimal(0)) + amount


def hint_matches(hint: str, secret: str) -> bool:
    """Whether the provider's redacted ``hint`` can be ``secret`` (its head and tail match).

    An empty hint is a call made with no key at all: the demo gateway's, when
    the simulated provider serves it.
    """
    if not hint:
        return secret == ""
    head, dots, tail = hint.partition("...")
    if not dots:
        return hint == secret
    return secret.startswith(head) and secret.endswith(tail)


class _Client:
    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = headers
        self._timeout_s = timeout_s

    def get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        url = f"{self._base}{path}?{urlencode(query)}" if query else self._base + path
        request = Request(url, headers={**self._headers, "accept": "application/json"})
        try:
            with urlopen(request, timeout=self._timeout_s) as response:
                body = response.read()
        except HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise ProviderReportUnavailable(f"{path}: the provider answered {exc.code}: "
                                            f"{detail}") from None
        except (URLError, OSError) as exc:
            raise ProviderReportUnavailable(f"{path}: the provider is unreachable "
                                            f"({getattr(exc, 'reason', exc)})") from None
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise ProviderReportUnavailable(f"{path}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderReportUnavailable(f"{path}: the answer is not a JSON object")
        return data

    def pages(self, path: str, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every page of a cursor-paged report (``has_more`` / ``next_page``)."""
        cursor = ""
        for _ in range(10_000):
            page = self.get(path, query + ([("page", cursor)] if cursor else []))
            yield page
            cursor = str(page.get("next_page") or "")
            if not page.get("has_more") or not cursor:
                return
        raise ProviderReportUnavailable(f"{path}: more than 10,000 pages")


def _day_of(value: Any) -> date:
    if isinstance(value, (int, Decimal)):
        return datetime.fromtimestamp(int(value), UTC).date()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).date()


def _count(value: Any) -> int:
    return int(value or 0)


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _openai(client: _Client, start: date, end: date) -> ProviderReport:
    report = ProviderReport("openai")
    span = [("start_time", str(int(_utc(start).timestamp()))),
            ("end_time", str(int(_utc(end).timestamp()))), ("bucket_width", "1d"),
            ("limit", str(_PAGE_DAYS))]
    grouped = [*span, ("group_by", "model"), ("group_by", "api_key_id"), ("group_by", "project_id")]
    for surface in ("completions", "embeddings"):
        for page in client.pages(f"/v1/organization/usage/{surface}", grouped):
            for bucket in page.get("data") or []:
                day = _day_of(bucket["start_time"])
                for row in bucket.get("results") or []:
                    cached = _count(row.get("input_cached_tokens"))
                    tokens = Tokens(input=_count(row.get("input_tokens")) - cached,
                                    cache_read=cached, output=_count(row.get("output_tokens")))
                    report.usage.append(ReportedUsage(
                        day, str(row.get("model") or ""), str(row.get("api_key_id") or ""),
                        str(row.get("project_id") or ""), tokens))
    costs = [*span, ("group_by", "line_item"), ("group_by", "project_id")]
    for page in client.pages("/v1/organization/costs", costs):
        for bucket in page.get("data") or []:
            day = _day_of(bucket["start_time"])
            for row in bucket.get("results") or []:
                model = str(row.get("line_item") or "").rsplit(", ", 1)[0]
                report.add_cost(day, model, str(row.get("project_id") or ""),
                                Decimal(str((row.get("amount") or {})["value"])))
    projects = client.get("/v1/organization/projects", [("limit", "100")])
    for project in projects.get("data") or []:
        listed = client.get(f"/v1/organization/projects/{project['id']}/api_keys",
                            [("limit", "100")])
        for key in listed.get("data") or []:
            report.keys[str(key["id"])] = str(key.get("redacted_value") or "")
    return report


def _anthropic(client: _Client, start: date, end: date) -> ProviderReport:
    report = ProviderReport("anthropic")
    span = [("starting_at", f"{_utc(start):%Y-%m-%dT%H:%M:%SZ}"),
            ("ending_at", f"{_utc(end):%Y-%m-%dT%H:%M:%SZ}"), ("bucket_width", "1d"),
            ("limit", str(_PAGE_DAYS))]
    grouped = [*span, ("group_by[]", "model"), ("group_by[]", "api_key_id"), ("group_by[]", "workspace_id")]
    for page in client.pages("/v1/organizations/usage_report/messages", grouped):
        for bucket in page.get("data") or []:
            day = _day_of(bucket["starting_at"])
            for row in bucket.get("results") or []:
                creation = row.get("cache_creation") or {}
                write_1h = _count(creation.get("ephemeral_1h_input_tokens"))
                tokens = Tokens(
                    input=_count(row.get("uncached_input_tokens")),
                    cache_read=_count(row.get("cache_read_input_tokens")),
                    cache_write=_count(creation.get("ephemeral_5m_input_tokens")) + write_1h,
                    output=_count(row.get("output_tokens")))
                report.usage.append(ReportedUsage(
                    day, str(row.get("model") or ""), str(row.get("api_key_id") or ""),
                    str(row.get("workspace_id") or ""), tokens, write_1h))
    for page in client.pages("/v1/organizations/cost_report",
                             [*span, ("group_by[]", "workspace_id"),
                              ("group_by[]", "description")]):
        for bucket in page.get("data") or []:
            day = _day_of(bucket["starting_at"])
            for row in bucket.get("results") or []:
                cents = Decimal(str(row.get("amount") or "0"))
                report.add_cost(day, str(row.get("model") or ""),
                                str(row.get("workspace_id") or ""), cents / 100)
    listed = client.get("/v1/organizations/api_keys", [("limit", "100")])
    for key in listed.get("data") or []:
        report.keys[str(key["id"])] = str(key.get("partial_key_hint") or "")
    return report


def fetch_report(kind: str, base_url: str, admin_key: str, start: date, end: date, *,
                 timeout_s: float = 30.0) -> ProviderReport:
    """``kind``'s reports for the UTC days ``start`` ≤ day < ``end``."""
    if kind == "openai":
        headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
        return _openai(_Client(base_url, headers, timeout_s), start, end)
    if kind == "anthropic":
        headers = {"anthropic-version": _ANTHROPIC_VERSION}
        if admin_key:
            headers["x-api-key"] = admin_key
        return _anthropic(_Client(base_url, headers, timeout_s), start, end)
    raise ValueError(f"no usage report API for provider kind {kind!r}")
