"""The chargeback as data: per-team totals, breakdowns, buckets and the change on last month.

``build_chargeback`` is pure: it turns the rows ``chargeback_query`` read into
the figures every output renders, so the HTML, the CSV and the lead summaries
cannot disagree. Sums are ``Decimal`` throughout.

Buckets, which are visible states and never folded into a team:

- *unattributed*: spend whose key named a team not in the configuration (or
  none); it is booked to ``reports.unattributed_cost_centre`` and always
  present in the report, even at zero, so an empty bucket is a checked fact;
- *unpriced*: calls to models no price source knows; they carry tokens but no
  cost, and are listed by team and model instead of showing as $0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.schemas import Settings

from .chargeback_period import Month, Window
from .chargeback_query import DailySpend, Line

if TYPE_CHECKING:
    from .chargeback_savings import Savings
    from .reconcile_findings import ProviderCheck

ZERO = Decimal(0)
UNATTRIBUTED = "Unattributed"


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One row of a by-model / by-user / ... table."""

    key: str
    requests: int
    tokens: int
    cost_usd: Decimal
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class UnpricedUse:
    """Calls of one team to one model that has no price: tokens, but no cost."""

    team: str
    provider: str
    model: str
    requests: int
    tokens: int


@dataclass(slots=True)
class TeamChargeback:
    """One team's month, or the unattributed bucket (``attributed`` false)."""

    name: str
    cost_centre: str
    lead: str
    attributed: bool
    lines: list[Line] = field(default_factory=list)
    previous_cost_usd: Decimal = ZERO
    daily: dict[date, Decimal] = field(default_factory=dict)
    #: Calls the gateway refused (revoked key, rate limit, blocking budget...), by reason.
    refused: dict[str, int] = field(default_factory=dict)

    def _sum(self, pick: Callable[[Line], int]) -> int:
        return sum(pick(line) for line in self.lines)

    @property
    def cost_usd(self) -> Decimal:
        return sum((line.cost_usd for line in self.lines), ZERO)

    @property
    def requests(self) -> int:
        return self._sum(lambda line: line.requests)

    @property
    def errors(self) -> int:
        return self._sum(lambda line: line.errors)

    @property
    def tokens(self) -> int:
        return self._sum(lambda line: line.tokens)

    @property
    def input_tokens(self) -> int:
        return self._sum(lambda line: line.input_tokens)

    @property
    def output_tokens(self) -> int:
        return self._sum(lambda line: line.output_tokens)

    @property
    def cache_read_tokens(self) -> int:
        return self._sum(lambda line: line.cache_read_tokens)

    @property
    def cache_write_tokens(self) -> int:
        return self._sum(lambda line: line.cache_write_tokens)

    @property
    def unpriced_requests(self) -> int:
        return self._sum(lambda line: line.requests if line.unpriced else 0)

    @property
    def change_usd(self) -> Decimal:
        return self.cost_usd - self.previous_cost_usd

    @property
    def change_ratio(self) -> Decimal | None:
        """Relative change on last month; ``None`` when last month had no spend."""
        return self.change_usd / self.previous_cost_usd if self.previous_cost_usd else None

    def by(self, dimension: str) -> list[Breakdown]:
        """Breakdown by ``model``, ``provider``, ``user``, ``repo``, ``tool`` or ``team``."""
        return breakdown(self.lines, lambda line: str(getattr(line, dimension)))


def breakdown(lines: Iterable[Line], key: Callable[[Line], str]) -> list[Breakdown]:
    """Group ``lines`` by ``key``; largest cost first, then most requests, then key."""
    groups: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        groups[key(line)].append(line)
    rows = [Breakdown(name, sum(x.requests for x in group), sum(x.tokens for x in group),
                      sum((x.cost_usd for x in group), ZERO),
                      sum(x.requests for x in group if x.unpriced))
            for name, group in groups.items()]
    return sorted(rows, key=lambda row: (-row.cost_usd, -row.requests, row.key))


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The report's own totals beside the ones computed from ``events``."""

    report_cost_usd: Decimal
    report_requests: int
    ledger_cost_usd: Decimal
    ledger_requests: int

    @property
    def balanced(self) -> bool:
        return (self.report_cost_usd == self.ledger_cost_usd
                and self.report_requests == self.ledger_requests)


@dataclass(slots=True)
class Chargeback:
    """A month's chargeback: teams (by cost, largest first), the buckets, and the check."""

    month: Month
    window: Window
    teams: list[TeamChargeback]
    unattributed: TeamChargeback
    reconciliation: Reconciliation | None = None
    #: The ledger against the providers' own reports over the month's days (the footer).
    provider_check: ProviderCheck | None = None
    #: What routing rules saved, and what shadow rules would save (``chargeback_savings``).
    savings: Savings | None = None

    @property
    def all_teams(self) -> list[TeamChargeback]:
        """Teams, then the unattributed bucket: everything that is booked."""
        return [*self.teams, self.unattributed]

    @property
    def lines(self) -> list[Line]:
        return [line for team in self.all_teams for line in team.lines]

    @property
    def cost_usd(self) -> Decimal:
        return sum((team.cost_usd for team in self.all_teams), ZERO)

    @property
    def previous_cost_usd(self) -> Decimal:
        return sum((team.previous_cost_usd for team in self.all_teams), ZERO)

    @property
    def requests(self) -> int:
        return sum(team.requests for team in self.all_teams)

    @property
    def tokens(self) -> int:
        return sum(team.tokens for team in self.all_teams)

    @property
    def unpriced(self) -> list[UnpricedUse]:
        """Calls without a price, by team and model: the unpriced bucket."""
        found: dict[tuple[str, str, str], list[Line]] = defaultdict(list)
        for team in self.all_teams:
            for line in team.lines:
                if line.unpriced:
                    found[(team.name, line.provider, line.model)].append(line)
        return [UnpricedUse(t, p, m, sum(x.requests for x in ls), sum(x.tokens for x in ls))
                for (t, p, m), ls in sorted(found.items())]

    def daily_totals(self) -> dict[date, Decimal]:
        totals = dict.fromkeys(self.window.days(), ZERO)
        for team in self.all_teams:
            for day, cost in team.daily.items():
                totals[day] = totals.get(day, ZERO) + cost
        return totals


def build_chargeback(settings: Settings, month: Month, window: Window, lines: list[Line],
                     daily: list[DailySpend],
                     previous: dict[tuple[bool, str], Decimal]) -> Chargeback:
    """Assemble the month from the query rows; configured teams appear even without spend."""
    teams: dict[str, TeamChargeback] = {
        team.name: TeamChargeback(team.name, team.cost_centre, team.lead, True)
        for team in settings.teams}
    unattributed = TeamChargeback(UNATTRIBUTED, settings.reports.unattributed_cost_centre, "",
                                  False)
    for line in lines:
        if not line.attributed:
            unattributed.lines.append(line)
            continue
        if line.team not in teams:  # attributed under an earlier configuration
            teams[line.team] = TeamChargeback(line.team, line.cost_centre, "", True)
        teams[line.team].lines.append(line)
    for spend in daily:
        target = teams.get(spend.team) if spend.attributed else unattributed
        if target is not None:
            target.daily[spend.day] = target.daily.get(spend.day, ZERO) + spend.cost_usd
    for (attributed, name), cost in previous.items():
        if not attributed:
            unattributed.previous_cost_usd = cost
        elif name in teams:
            teams[name].previous_cost_usd = cost
        else:  # spent last month, nothing this month and no longer configured
            teams[name] = TeamChargeback(name, "", "", True, previous_cost_usd=cost)
    ordered = sorted(teams.values(), key=lambda team: (-team.cost_usd, team.name))
    return Chargeback(month, window, ordered, unattributed)
