"""The planted fortnight: incidents where they should be, and the scoring rule."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from meterline.schemas import Envelope
from meterline.simulator.anomalies import UNPRICED_MODEL, Finding, plant_anomalies, score
from meterline.simulator.organisation import Organisation


def _tokens(envelope: Envelope) -> float:
    """A cost stand-in: tokens, with cache reads at a tenth (shares are what matter here)."""
    usage = envelope.usage
    return usage.input_tokens + 5 * usage.output_tokens + usage.cache_read_tokens / 10


def test_planted_incidents_and_scoring() -> None:
    org = Organisation.demo(seed=3)
    zone = ZoneInfo(org.timezone)
    start, end = datetime(2026, 9, 1, tzinfo=zone), datetime(2026, 9, 15, tzinfo=zone)
    envelopes, planted = plant_anomalies(org, start, end, volume=0.2, cost_of=_tokens)
    assert [e.received_at for e in envelopes] == sorted(e.received_at for e in envelopes)
    assert len({e.request_id for e in envelopes}) == len(envelopes)
    loop, heavy, day, unpriced = planted
    looping = [e for e in envelopes if loop.detect_from <= e.received_at < loop.detect_until
               and e.key_id in loop.entities]
    assert len(looping) >= 420 and loop.detect_from.hour == 3
    team = [e for e in envelopes if e.team == heavy.team]
    share = sum(_tokens(e) for e in team if e.user in heavy.entities) / sum(map(_tokens, team))
    assert 0.55 < share < 0.65
    assert min(e.received_at for e in envelopes if e.served_model == UNPRICED_MODEL) \
        == unpriced.detect_from
    at = loop.detect_from + timedelta(minutes=17)
    findings = [Finding("request_spike", loop.team, sorted(loop.entities)[0], at),
                Finding("budget_share", heavy.team, next(iter(heavy.entities)), day.detect_from),
                Finding("new_tool", day.team, "aider", day.detect_from)]
    result = score(findings, planted)
    assert result.found == [loop.name, heavy.name]
    assert result.missed == [day.name, unpriced.name]
    assert (result.true_findings, len(result.false_alarms)) == (2, 1)
