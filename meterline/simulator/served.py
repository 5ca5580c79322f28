"""What the simulated provider served and billed: the book its usage and cost reports read.

``ServedBook`` records every call the provider served (its handlers record
each 2xx answer; ``POST /sim/served`` records calls it is told it served) and
keeps, per UTC hour, one ``Tally`` per ``Group``: provider kind, API key id,
project (OpenAI) or workspace (Anthropic), model, service tier, surface family
(``completions`` or ``embeddings``) and Anthropic's context window. Day
buckets are the sum of their hours.

Tokens follow ``meterline.schemas.Usage``: ``input_tokens`` are *uncached*.
Each call is priced on its own, at its own time, by a ``PriceBook`` without
overrides (list prices, as the pipeline prices by default), and the costs are
added: a day's cost is the sum of its calls' quotes, to the last digit. The
quote's input cost is split by token kind (cache read, 5 minute and 1 hour
cache writes are each priced alone; uncached input is the rest), so the
parts always add up to the quote. An unpriced model costs 0.

Key ids are the provider's id for the presented secret (``provider_key_id``)
and the book keeps each key's redacted hint (``key_hint``), as the providers
show them. Thread-safe: one lock around every read and write.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from meterline.processors.price_book import PriceBook
from meterline.schemas import Usage

KINDS = ("openai", "anthropic")
DEFAULT_SCOPE = {"openai": "proj_meterline_sim", "anthropic": "wrkspc_meterline_sim"}
SURFACES = {"openai.chat": "openai", "openai.responses": "openai",
            "openai.embeddings": "openai", "anthropic.messages": "anthropic"}
#: Tier names meaning the provider's standard price (stored as "", as ``Usage`` does).
_DEFAULT_TIERS = frozenset({"", "default", "standard", "auto"})
#: Anthropic's long-context threshold (total input tokens) for ``context_window``.
_LONG_CONTEXT = 200_000
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
           "cache_write_1h_tokens", "reasoning_tokens")
_CALL_FIELDS = frozenset({"at", "provider", "api_key", "model", "surface", "service_tier",
                          "scope", *_COUNTS})
MAX_CALLS = 100_000
_ZERO = Decimal(0)


def provider_key_id(kind: str, secret: str) -> str:
    """The provider's id for the API key ``secret`` ("" included: the demo gateway's none)."""
    prefix = "apikey_" if kind == "anthropic" else "key_"
    return prefix + hashlib.sha256(secret.encode()).hexdigest()[:16]


def key_hint(secret: str) -> str:
    """The redacted hint providers show of a key: ``sk-...wxyz`` ("" for no key)."""
    return f"{secret[:3]}...{secret[-4:]}" if secret else ""


def normal_tier(tier: str) -> str:
    """A reported service tier in ``Usage``'s convention: "" for the default tier."""
    tier = tier.strip().lower()
    return "" if tier in _DEFAULT_TIERS else tier


def family_of(surface: str) -> str:
    return "embeddings" if surface == "openai.embeddings" else "completions"


class Group(NamedTuple):
    kind: str
    api_key_id: str
    scope: str
    model: str
    service_tier: str  # "" is the default tier
    family: str
    context_window: str  # Anthropic's "0-200k" / "200k-1M"; "" for OpenAI


@dataclass(slots=True)
class Tally:
    """Counts and costs (USD, per token kind) of the calls of one group in one bucket."""

    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    input_cost: Decimal = _ZERO  # uncached input
    cache_read_cost: Decimal = _ZERO
    cache_write_5m_cost: Decimal = _ZERO
    cache_write_1h_cost: Decimal = _ZERO
    output_cost: Decimal = _ZERO

    def add(self, other: Tally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def all_input_cost(self) -> Decimal:
        return (self.input_cost + self.cache_read_cost + self.cache_write_5m_cost
                + self.cache_write_1h_cost)

    @property
    def cost(self) -> Decimal:
        return self.all_input_cost + self.output_cost


@dataclass(slots=True)
class KeySeen:
    """An API key the provider served, as its key listings show it."""

    kind: str
    id: str
    hint: str
    scope: str
    first_seen: datetime
    scopes: set[str] = field(default_factory=set)


class ServedCall(NamedTuple):
    at: datetime
    kind: str
    secret: str
    model: str
    surface: str
    usage: Usage
    scope: str


class ServedBook:
    """Every served call, aggregated per UTC hour and group; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prices = PriceBook(overrides=[],
                                 provider_kinds={"openai": "openai", "anthropic": "anthropic"})
        self._hours: dict[int, dict[Group, Tally]] = {}
        self._keys: dict[tuple[str, str], KeySeen] = {}
        self._ids: dict[tuple[str, str], str] = {}  # (kind, secret) → key id, memoised

    def record(self, at: datetime, kind: str, secret: str, model: str, surface: str,
               usage: Usage, project: str = "") -> None:
        """One served call: ``project`` is the OpenAI project or Anthropic workspace."""
        self.record_calls([ServedCall(at, kind, secret, model, surface, usage, project)])

    def record_calls(self, calls: Iterable[ServedCall]) -> int:
        """Record ``calls`` (already valid, e.g. from ``parse_calls``); how many."""
        count = 0
        with self._lock:
            for call in calls:
                self._record(call)
                count += 1
        return count

    def clear(self) -> None:
        with self._lock:
            self._hours.clear()
            self._keys.clear()

    def _record(self, call: ServedCall) -> None:
        kind, usage, at = call.kind, call.usage, call.at.astimezone(UTC)
        if (tier := normal_tier(usage.service_tier)) != usage.service_tier:
            usage = usage.model_copy(update={"service_tier": tier})
        key_id = self._ids.get((kind, call.secret))
        if key_id is None:
            key_id = self._ids[(kind, call.secret)] = provider_key_id(kind, call.secret)
        scope = call.scope or DEFAULT_SCOPE[kind]
        window = ""
        if kind == "anthropic":
            total_in = (usage.input_tokens + usage.cache_read_tokens
                        + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens)
            window = "200k-1M" if total_in > _LONG_CONTEXT else "0-200k"
        group = Group(kind, key_id, scope, call.model, tier,
                      family_of(call.surface), window)
        hour = int(at.timestamp()) // 3600 * 3600
        tally = self._hours.setdefault(hour, {}).get(group)
        if tally is None:
            tally = self._hours[hour][group] = Tally()
        tally.requests += 1
        tally.input_tokens += usage.input_tokens
        tally.cache_read_tokens += usage.cache_read_tokens
        tally.cache_write_5m_tokens += usage.cache_write_5m_tokens
        tally.cache_write_1h_tokens += usage.cache_write_1h_tokens
        tally.output_tokens += usage.output_tokens
        self._price(tally, kind, call.model, usage, at)
        seen = self._keys.get((kind, key_id))
        if seen is None:
            seen = self._keys[(kind, key_id)] = KeySeen(kind, key_id, key_hint(call.secret),
                                                        scope, at)
        elif at < seen.first_seen:
            seen.first_seen = at
        seen.scopes.add(scope)

    def _price(self, tally: Tally, kind: str, model: str, usage: Usage, at: datetime) -> None:
        quote = self._prices.quote(kind, model, usage, at)
        if quote is None:
            return
        rest = quote.input_cost_usd
        read, write_5m, write_1h = (usage.cache_read_tokens, usage.cache_write_5m_tokens,
                                    usage.cache_write_1h_tokens)
        for tokens, name, (r, w5, w1) in ((read, "cache_read_cost", (read, 0, 0)),
                                          (write_5m, "cache_write_5m_cost", (0, write_5m, 0)),
                                          (write_1h, "cache_write_1h_cost", (0, 0, write_1h))):
            if tokens:
                alone = Usage(cache_read_tokens=r, cache_write_5m_tokens=w5,
                              cache_write_1h_tokens=w1, source="provider",
                              service_tier=usage.service_tier)
                cost = self._prices.quote(kind, model, alone, at)
                if cost is not None:
                    setattr(tally, name, getattr(tally, name) + cost.input_cost_usd)
                    rest -= cost.input_cost_usd
        tally.input_cost += rest
        tally.output_cost += quote.output_cost_usd

    def buckets(self, kind: str, start: int, end: int, width: int,
                family: str | None = None) -> list[tuple[int, dict[Group, Tally]]]:
        """(bucket start, tallies per group) of every ``width``-second bucket in [start, end).

        Buckets are aligned to ``width`` (UTC hours or days); empty ones are included.
        """
        first = start // width * width
        out: list[tuple[int, dict[Group, Tally]]] = [
            (bucket, {}) for bucket in range(first, end, width)]
        if not out:
            return out
        with self._lock:
            for hour, groups in self._hours.items():
                if not first <= hour < end:
                    continue
                merged = out[(hour - first) // width][1]
                for group, tally in groups.items():
                    if group.kind != kind or (family is not None and group.family != family):
                        continue
                    into = merged.get(group)
                    if into is None:
                        into = merged[group] = Tally()
                    into.add(tally)
        return out

    def keys(self, kind: str) -> list[KeySeen]:
        """The keys of ``kind`` the provider served, first seen first."""
        with self._lock:
            seen = [KeySeen(k.kind, k.id, k.hint, k.scope, k.first_seen, set(k.scopes))
                    for k in self._keys.values() if k.kind == kind]
        return sorted(seen, key=lambda k: (k.first_seen, k.id))


def _count(call: dict[str, Any], name: str, where: str) -> int:
    value = call.get(name, 0)
    if type(value) is not int or value < 0:
        raise ValueError(f"{where}.{name}: must be a non-negative integer, got {value!r}")
    return value


def _text(call: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = call.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{name}: must be a string, got {value!r}")
    return value


def parse_calls(payload: Any) -> list[ServedCall]:
    """The calls of a ``POST /sim/served`` body; ValueError naming the first bad field."""
    calls = payload.get("calls") if isinstance(payload, dict) else None
    if not isinstance(calls, list):
        raise ValueError('the body must be a JSON object {"calls": [...]}')
    if len(calls) > MAX_CALLS:
        raise ValueError(f"at most {MAX_CALLS} calls per request, got {len(calls)}")
    parsed: list[ServedCall] = []
    append = parsed.append
    for index, call in enumerate(calls):
        where = f"calls[{index}]"
        if not isinstance(call, dict):
            raise ValueError(f"{where}: must be an object")
        if unknown := call.keys() - _CALL_FIELDS:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kind, surface = _text(call, "provider", where), _text(call, "surface", where)
        if kind not in KINDS:
            raise ValueError(f"{where}.provider: must be 'openai' or 'anthropic', got {kind!r}")
        if SURFACES.get(surface) != kind:
            raise ValueError(f"{where}.surface: {surface!r} is not a billed {kind} surface")
        model = _text(call, "model", where)
        if not model:
            raise ValueError(f"{where}.model: must not be empty")
        try:
            at = datetime.fromisoformat(_text(call, "at", where))
        except ValueError:
            raise ValueError(f"{where}.at: not an ISO-8601 time: {call.get('at')!r}") from None
        if at.tzinfo is None:
            raise ValueError(f"{where}.at: needs a UTC offset (e.g. +00:00 or Z)")
        usage = Usage(
            input_tokens=_count(call, "input_tokens", where),
            output_tokens=_count(call, "output_tokens", where),
            cache_read_tokens=_count(call, "cache_read_tokens", where),
            cache_write_5m_tokens=_count(call, "cache_write_5m_tokens", where),
            cache_write_1h_tokens=_count(call, "cache_write_1h_tokens", where),
            reasoning_tokens=_count(call, "reasoning_tokens", where), source="provider",
            service_tier=normal_tier(_text(call, "service_tier", where, "")))
        append(ServedCall(at, kind, _text(call, "api_key", where), model, surface, usage,
                          _text(call, "scope", where, "")))
    return parsed
