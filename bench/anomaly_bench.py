"""Anomaly detection benchmark: precision and recall over a planted month and a clean one.

Two months of a simulated organisation (``Organisation.demo``):

- **planted**: September with the four incidents of
  ``meterline.simulator.anomalies`` (a looping agent at 03:00, a user at 60%
  of the team's spend, a 10x team day, an unpriced model first used
  mid-month);
- **control**: October, the same organisation with nothing planted.

For speed this runs the *pure* detectors directly, in event-time order:
envelope → ``processors.enrich`` (real price book) → ``TeamDetectors`` /
``ProviderDetectors`` with a dict as their state. That is the code the
faust agents run, minus Kafka and the tables; ``tests/e2e/test_anomalies.py``
runs the same planted traffic through the real pipeline.

The organisation prices its self-hosted ``acme-coder-34b`` with an override,
as an operator would once told; otherwise every month would rightly report
it as an unpriced model. Recall counts incidents caught; precision counts
findings (a 10x day legitimately raises several: team day, users, keys).

A finding that matches no incident is either *real* or a *false alarm*.
Only the budget share has a ground truth outside the plants: the simulated
organisation concentrates spend (its claude-code/Opus users), so in a team a
user may hold over 40% every month. A ``budget_share`` finding whose user
ends the month above the team's threshold is counted as real (a policy hit
the detector should report), not as a false alarm; every other unmatched
finding is a false alarm, reported per team-month.

Run: ``python bench/anomaly_bench.py [--volume 1.0] [--seed 7]`` (well under a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from meterline.processors import Directory, PriceBook, enrich  # noqa: E402
from meterline.processors.anomaly import (  # noqa: E402
    Observation,
    ProviderDetectors,
    TeamDetectors,
)
from meterline.schemas import Anomaly, Envelope, Settings  # noqa: E402
from meterline.simulator.anomalies import (  # noqa: E402
    Finding,
    PlantedAnomaly,
    Score,
    plant_anomalies,
    score,
)
from meterline.simulator.organisation import Organisation  # noqa: E402

SELF_HOSTED_PRICE = {"model": "acme-coder-34b", "provider": "vllm", "input_per_mtok": "0.2",
                     "output_per_mtok": "0.6"}


def bench_settings(org: Organisation) -> Settings:
    return Settings(**org.settings_overrides(), prices=[SELF_HOSTED_PRICE])


def detect(settings: Settings, envelopes: Iterable[Envelope]) -> list[Anomaly]:
    """Every finding the detectors make over ``envelopes`` (in the order given)."""
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    teams, providers = TeamDetectors(settings), ProviderDetectors(settings)
    team_state: dict[str, object] = {}
    provider_state: dict[str, object] = {}
    found: list[Anomaly] = []
    for envelope in envelopes:
        observation = Observation.from_row(enrich(envelope, directory, book).model_dump())
        found += teams.observe(observation, team_state)
        found += providers.observe(observation, provider_state)
    return found


def findings(anomalies: Iterable[Anomaly]) -> list[Finding]:
    return [Finding(a.kind, a.team, a.entity, a.detected_at) for a in anomalies]


def month_shares(settings: Settings, envelopes: Iterable[Envelope]) -> dict[tuple[str, str], float]:
    """Each (team, user)'s share of the team's spend over the whole window."""
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    spend: dict[tuple[str, str], float] = {}
    teams: dict[str, float] = {}
    for envelope in envelopes:
        cost = float(enrich(envelope, directory, book).cost_usd)
        spend[(envelope.team, envelope.user)] = spend.get((envelope.team, envelope.user), 0) + cost
        teams[envelope.team] = teams.get(envelope.team, 0.0) + cost
    return {key: value / teams[key[0]] for key, value in spend.items() if teams[key[0]] > 0}


def real_policy_hit(settings: Settings, shares: dict[tuple[str, str], float],
                    finding: Finding) -> bool:
    return (finding.kind == "budget_share" and shares.get((finding.team, finding.entity), 0.0)
            > settings.anomalies.thresholds_for(finding.team).budget_share)


def run_month(org: Organisation, settings: Settings, start: datetime, end: datetime, *,
              volume: float, plant: bool) -> tuple[Score, int, int, float, int]:
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})

    def cost_of(envelope: Envelope) -> float:
        return float(enrich(envelope, directory, book).cost_usd)

    planted: list[PlantedAnomaly] = []
    if plant:
        envelopes, planted = plant_anomalies(org, start, end, volume=volume, cost_of=cost_of)
    else:
        envelopes = list(org.envelopes(start, end, volume=volume))
    began = time.monotonic()
    anomalies = detect(settings, envelopes)
    elapsed = time.monotonic() - began
    team_months = len({e.team for e in envelopes})
    result = score(findings(anomalies), planted)
    shares = month_shares(settings, envelopes)
    real = [f for f in result.false_alarms if real_policy_hit(settings, shares, f)]
    result.false_alarms = [f for f in result.false_alarms if f not in real]
    return result, len(envelopes), team_months, elapsed, len(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    org = Organisation.demo(seed=args.seed, developers_per_team=8)
    settings = bench_settings(org)
    zone = ZoneInfo(org.timezone)
    months = (("planted (2026-09)", datetime(2026, 9, 1, tzinfo=zone),
               datetime(2026, 10, 1, tzinfo=zone), True),
              ("control (2026-10)", datetime(2026, 10, 1, tzinfo=zone),
               datetime(2026, 11, 1, tzinfo=zone), False))
    print(f"Anomaly detection, Organisation.demo(seed={args.seed}, developers_per_team=8), "
          f"volume {args.volume}, pure detectors over enriched events (see module docstring)\n")
    print("| month | calls | planted | found | recall | findings | match a plant "
          "| real, unplanted | false alarms | false alarms / team-month | precision | detect s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    details: list[str] = []
    for label, start, end, plant in months:
        result, calls, team_months, elapsed, real = run_month(
            org, settings, start, end, volume=args.volume, plant=plant)
        total = result.true_findings + real + len(result.false_alarms)
        precision = (result.true_findings + real) / total if total else 1.0
        print(f"| {label} | {calls:,} | {result.planted} | {len(result.found)} | "
              f"{result.recall:.0%} | {total} | {result.true_findings} | {real} | "
              f"{len(result.false_alarms)} | {len(result.false_alarms) / team_months:.2f} | "
              f"{precision:.0%} | {elapsed:.1f} |")
        details += [f"- {label}: missed {name}" for name in result.missed]
        details += [f"- {label}: false alarm {f.kind} {f.team}/{f.entity} at "
                    f"{f.detected_at.astimezone(zone):%a %d %b %H:%M}" for f in result.false_alarms]
    if details:
        print("\n" + "\n".join(details))


if __name__ == "__main__":
    main()
