"""A simulated month with planted anomalies, and the rule that says one was found.

``plant_anomalies`` takes an organisation's ordinary traffic (``Organisation.
envelopes``) and adds four incidents, each described by a ``PlantedAnomaly``
that says which findings count as catching it and when they must be made:

- **looping agent**: one developer's key sends hundreds of calls between 03:00
  and 04:00 local on a weekday, as an agent stuck in a retry loop would;
- **heavy user**: one developer's calls are repeated until they hold about
  60% of their team's spend (``cost_of`` prices an envelope; the caller passes
  the real enrichment so the share is the one the pipeline will see);
- **10x day**: every call of one team on one weekday is made ten times;
- **unpriced model**: a developer starts using a self-hosted model without a
  price, mid-window, a few calls an office hour from then on.

Everything is reproducible from ``seed``. ``match`` and ``score`` apply the
same rule to findings from the pipeline (ClickHouse rows) or from running
the detectors directly (the benchmark): a finding catches a planted
anomaly when its kind is one the incident should raise, it names the
incident's team and one of its entities, and it was detected (event time)
inside the incident's detection window. Every other finding is a false alarm.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from meterline.schemas import Envelope, Usage

from .organisation import Developer, Organisation

UNPRICED_MODEL = "acme-coder-70b"
#: What a burst of calls may raise: a spike against the baseline, or an hourly ceiling.
RATE_KINDS = frozenset({"request_spike", "spend_spike", "request_ceiling", "spend_ceiling"})


@dataclass(frozen=True, slots=True)
class PlantedAnomaly:
    """One incident and what counts as catching it."""

    name: str
    team: str
    kinds: frozenset[str]
    entities: frozenset[str]
    detect_from: datetime
    detect_until: datetime


@dataclass(frozen=True, slots=True)
class Finding:
    """The fields of a finding the scoring rule reads (from an ``Anomaly`` or a row)."""

    kind: str
    team: str
    entity: str
    detected_at: datetime


@dataclass(slots=True)
class Score:
    planted: int = 0
    found: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    true_findings: int = 0
    false_alarms: list[Finding] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return len(self.found) / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        total = self.true_findings + len(self.false_alarms)
        return self.true_findings / total if total else 1.0


def match(finding: Finding, planted: PlantedAnomaly) -> bool:
    return (finding.kind in planted.kinds and finding.team == planted.team
            and finding.entity in planted.entities
            and planted.detect_from <= finding.detected_at < planted.detect_until)


def score(findings: Iterable[Finding], planted: Sequence[PlantedAnomaly]) -> Score:
    """Recall over incidents; precision over findings (each finding true or false once)."""
    result = Score(planted=len(planted))
    caught: set[str] = set()
    for finding in findings:
        hits = [p.name for p in planted if match(finding, p)]
        if hits:
            result.true_findings += 1
            caught.update(hits)
        else:
            result.false_alarms.append(finding)
    result.found = [p.name for p in planted if p.name in caught]
    result.missed = [p.name for p in planted if p.name not in caught]
    return result


def _request_id(rng: random.Random, at: datetime) -> str:
    value = ((int(at.timestamp() * 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
             | (0b10 << 62) | rng.getrandbits(62))
    return str(uuid.UUID(int=value))


def _copy(rng: random.Random, envelope: Envelope, at: datetime) -> Envelope:
    shift = at - envelope.received_at
    return envelope.model_copy(update={
        "request_id": _request_id(rng, at), "received_at": at,
        "done_at": envelope.done_at + shift,
        "first_byte_at": None if envelope.first_byte_at is None else envelope.first_byte_at + shift})


def _weekday_on_or_after(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), zone)


def plant_anomalies(org: Organisation, start: datetime, end: datetime, *, volume: float,
                    cost_of: Callable[[Envelope], float], seed: int = 1
                    ) -> tuple[list[Envelope], list[PlantedAnomaly]]:
    """The window's traffic with the four incidents added, in time order, and their specs.

    Needs at least two weeks and three teams: the incidents fall on weekdays
    after the first week, so detectors have a baseline to judge them against.
    """
    rng = random.Random(seed)
    zone = ZoneInfo(org.timezone)
    base = list(org.envelopes(start, end, volume=volume))
    teams = [team.name for team in org.teams]
    first_day = start.astimezone(zone).date()
    extra: list[Envelope] = []
    planted: list[PlantedAnomaly] = []

    looper = next(d for d in org.developers if d.team == teams[0])
    loop_day = _weekday_on_or_after(first_day + timedelta(days=9))
    loop_start = _local(loop_day, 3, zone)
    template = next(e for e in base if e.key_id == looper.key_id and e.status == 200)
    for index in range(420):
        extra.append(_copy(rng, template, loop_start + timedelta(seconds=index * 8.5)))
    planted.append(PlantedAnomaly("looping agent at 03:00", teams[0], RATE_KINDS,
                                  frozenset({looper.key_id, looper.name, teams[0]}),
                                  loop_start, loop_start + timedelta(hours=1)))

    heavy = _heavy_user(org, base, teams[1], cost_of)
    # copies are of successful calls only: errors are independent events, and
    # copying one failure ten times would plant a provider error burst too
    mine = [e for e in base if e.user == heavy.name and e.status == 200]
    team_usd = sum(cost_of(e) for e in base if e.team == teams[1])
    mine_usd = sum(cost_of(e) for e in mine)
    copies = 1.5 * (team_usd - mine_usd) / max(mine_usd, 1e-9) - 1  # to a 60% share
    for envelope in mine:
        whole = int(copies) + (rng.random() < copies - int(copies))
        for index in range(whole):
            extra.append(_copy(rng, envelope, envelope.received_at + timedelta(seconds=7 * (index + 1))))
    planted.append(PlantedAnomaly("user at 60% of team spend", teams[1],
                                  frozenset({"budget_share"}), frozenset({heavy.name}),
                                  start, end))

    spike_day = _weekday_on_or_after(first_day + timedelta(days=10))
    day_start, day_end = _local(spike_day, 0, zone), _local(spike_day + timedelta(days=1), 0, zone)
    for envelope in base:
        if (envelope.team == teams[2] and envelope.status == 200
                and day_start <= envelope.received_at < day_end):
            for index in range(9):
                extra.append(_copy(rng, envelope, envelope.received_at + timedelta(seconds=3 * (index + 1))))
    members = {d.name for d in org.developers if d.team == teams[2]} | {
        d.key_id for d in org.developers if d.team == teams[2]}
    planted.append(PlantedAnomaly("10x team spend day", teams[2], RATE_KINDS,
                                  frozenset(members | {teams[2]}), day_start, day_end))

    adopter = [d for d in org.developers if d.team == teams[0]][-1]
    first_use = _local(_weekday_on_or_after(first_day + timedelta(days=8)), 10, zone)
    extra.extend(_unpriced_calls(rng, adopter, first_use, end))
    planted.append(PlantedAnomaly("unpriced model first used mid-window", teams[0],
                                  frozenset({"unpriced_model", "new_model"}),
                                  frozenset({UNPRICED_MODEL}), first_use,
                                  first_use + timedelta(days=1)))
    return sorted([*base, *extra], key=lambda e: e.received_at), planted


def _heavy_user(org: Organisation, base: list[Envelope], team: str,
                cost_of: Callable[[Envelope], float]) -> Developer:
    """The team's developer with the most spend (the fewest copies make them 60%)."""
    spend: dict[str, float] = {}
    for envelope in base:
        if envelope.team == team:
            spend[envelope.user] = spend.get(envelope.user, 0.0) + cost_of(envelope)
    name = max(spend, key=lambda user: spend[user])
    return next(d for d in org.developers if d.name == name)


def _unpriced_calls(rng: random.Random, developer: Developer, first_use: datetime,
                    end: datetime) -> list[Envelope]:
    calls: list[Envelope] = []
    at = first_use
    zone = first_use.tzinfo
    while at < end:
        local = at.astimezone(zone)
        if local.weekday() < 5 and 9 <= local.hour < 18:
            done = at + timedelta(milliseconds=rng.uniform(800, 4000))
            calls.append(Envelope(
                request_id=_request_id(rng, at), received_at=at, first_byte_at=None, done_at=done,
                surface="openai.chat", provider="vllm", requested_model=UNPRICED_MODEL,
                served_model=UNPRICED_MODEL, key_id=developer.key_id, user=developer.name,
                team=developer.team, repo=developer.repos[0], repo_source="key_default",
                tool="openai-python", user_agent="OpenAI/Python 1.109.1", status=200,
                outcome="ok", usage=Usage(input_tokens=rng.randint(2000, 9000),
                                          output_tokens=rng.randint(100, 900), source="provider")))
        at += timedelta(minutes=rng.uniform(15, 45))
    return calls
