"""Absolute hourly ceilings per key and per user: found from a key's first hour, once.

The detector tests run ``TeamDetectors`` (every team detector, as the agent
does) over hand-built calls with a dict as state; a restart is the state as
the changelog holds it (JSON) handed to a new ``TeamDetectors``. The last
test sends the findings the agent's way (``encode_anomaly``, its headers) over
the real broker to the real sink, ClickHouse and notifier.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from meterline.processors.anomaly import Observation, TeamDetectors
from meterline.processors.anomaly.agent import encode_anomaly
from meterline.processors.emit import ANOMALY_HEADERS
from meterline.reports.anomaly_notify import AnomalyNotifier
from meterline.schemas import Anomaly, KafkaSettings, Settings, StoreSettings, Topics
from meterline.sinks.anomalies import AnomalySink, AnomalyWriter
from tests.harness import wait_until
from tests.processors.anomaly.events import obs
from tests.reports.slack_stub import SlackStub, running_stub

MORNING = datetime(2026, 9, 1, 10, 5, tzinfo=UTC)  # Settings default zone is UTC
HOUR = datetime(2026, 9, 1, 10, tzinfo=UTC)


def _calls(start: datetime, count: int, every_s: float, **fields: Any) -> list[Observation]:
    """``count`` calls ``every_s`` apart from ``start``, request ids r0, r1, ..."""
    return [obs(start + timedelta(seconds=index * every_s), request_id=f"r{index}", **fields)
            for index in range(count)]


def _run(detectors: TeamDetectors, state: dict[str, Any],
         calls: list[Observation]) -> list[Anomaly]:
    return [anomaly for call in calls for anomaly in detectors.observe(call, state)]


def _restored(state: dict[str, Any]) -> dict[str, Any]:
    """The state as a restarted detector gets it back: JSON through the changelog."""
    restored: dict[str, Any] = orjson.loads(orjson.dumps(state))
    return restored


def _loop(hours: int) -> list[Observation]:
    """A runaway agent on a brand-new key: a call every 3 s at $0.125 ($150, 1,200 an hour)."""
    return _calls(HOUR, 1200 * hours, 3, user="newbie", key="key_new", cost=0.125)


def test_a_key_minted_today_over_the_spend_ceiling_is_found_in_its_first_hour() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    # its first call at 10:05, then $1.50 every 20 s to the end of the hour: $247.50
    found = _run(detectors, state, _calls(MORNING, 165, 20, user="newbie", key="key_new",
                                          cost=1.5))
    assert [(a.kind, a.entity_kind, a.entity) for a in found] == [
        ("spend_ceiling", "key", "key_new")]  # once: its user's hour is covered by it
    anomaly = found[0]
    assert (anomaly.team, anomaly.evidence["user"], anomaly.evidence["key_id"]) == (
        "platform", "newbie", "key_new")
    assert (anomaly.observed, anomaly.threshold, anomaly.unit) == (51.0, 50.0, "usd")
    assert (anomaly.window_start, anomaly.window_end) == (HOUR, HOUR + timedelta(hours=1))
    assert anomaly.detected_at == MORNING + timedelta(minutes=11)  # its 34th call
    assert anomaly.evidence["setting"] == "key_hourly_spend_usd"
    assert anomaly.evidence["request_id"] == "r33"
    assert "key key_new of newbie (platform): $51.00 in the hour from Tue 01 Sep 10:00 UTC" \
        in anomaly.summary and "$50.00 an hour" in anomaly.summary


def test_a_user_over_the_request_ceiling_across_keys_is_found_once() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    # a cheap script fanned out over three new keys, 800 calls an hour each: no key passes
    # its ceiling (1,000), the user's hour (2,400) passes theirs (2,000)
    calls = [obs(HOUR + timedelta(seconds=index * 1.5), user="dana",
                 key=f"key_{'abc'[index % 3]}", model="gpt-4o-mini", cost=0.001,
                 request_id=f"r{index}") for index in range(2400)]
    found = _run(detectors, state, calls)
    assert [(a.kind, a.entity_kind, a.entity) for a in found] == [
        ("request_ceiling", "user", "dana")]
    anomaly = found[0]
    assert (anomaly.observed, anomaly.threshold, anomaly.unit) == (2001, 2000, "requests")
    assert (anomaly.window_start, anomaly.detected_at) == (HOUR, HOUR + timedelta(minutes=50))
    assert (anomaly.team, anomaly.evidence["key_id"], anomaly.evidence["hour_requests"]) == (
        "platform", "key_c", 2001)
    assert anomaly.evidence["setting"] == "user_hourly_requests"


def test_heavy_use_up_to_the_ceilings_raises_nothing() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    # a heavy first day: 400 calls and exactly $50.00 every hour from 09:00 to 17:00;
    # a ceiling is passed only above it
    found = _run(detectors, state, _calls(HOUR - timedelta(hours=1), 400 * 8, 9,
                                          key="key_heavy", cost=0.125))
    assert found == []
    assert state["c|platform|key|key_heavy|12"] == [[HOUR.date().toordinal(), 50.0, 400, 0]]


def test_per_team_overrides_raise_and_disable_ceilings() -> None:
    settings = Settings(anomalies={"teams": {
        "research": {"key_hourly_spend_usd": 200, "user_hourly_spend_usd": 300},
        "batch": {"key_hourly_spend_usd": 0, "user_hourly_spend_usd": 0}}})
    detectors = TeamDetectors(settings)
    state: dict[str, Any] = {}
    found: list[Anomaly] = []
    for team in ("platform", "research", "batch"):  # $2 a call, $260 in the hour
        found += _run(detectors, state, _calls(HOUR, 130, 20, team=team, key=f"key_{team}",
                                               cost=2.0))
    assert [(a.team, a.kind, a.entity, a.threshold, a.observed) for a in found] == [
        ("platform", "spend_ceiling", "key_platform", 50.0, 52.0),
        ("research", "spend_ceiling", "key_research", 200.0, 202.0)]


def test_one_finding_per_subject_hour_and_ceiling_however_far_the_hour_grows() -> None:
    detectors = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    found = _run(detectors, state, _loop(hours=2))
    assert [(a.kind, a.entity, a.window_start, a.observed) for a in found] == [
        ("spend_ceiling", "key_new", HOUR, 50.125),  # the 401st call
        ("request_ceiling", "key_new", HOUR, 1001),
        ("spend_ceiling", "key_new", HOUR + timedelta(hours=1), 50.125),
        ("request_ceiling", "key_new", HOUR + timedelta(hours=1), 1001)]
    assert len({a.anomaly_id for a in found}) == 4
    # the hour went on to 1,200 calls and $150 (its user's $100 too): nothing more
    assert state["c|platform|key|key_new|10"][0][1:] == [150.0, 1200, 3]
    assert state["c|platform|user|newbie|10"][0][1:] == [150.0, 1200, 3]


def test_a_restarted_detector_does_not_find_it_again() -> None:
    calls = _loop(hours=1)
    first = TeamDetectors(Settings())
    state: dict[str, Any] = {}
    found = _run(first, state, calls[:300])
    before_crossing = _restored(state)
    found += _run(first, state, calls[300:450])
    assert [a.kind for a in found] == ["spend_ceiling"]
    # restarted with the table restored; the uncommitted tail (50 calls) is processed
    # again, as after a crash (at least once): the hour's finding is not made twice
    after = _run(TeamDetectors(Settings()), _restored(state), calls[400:])
    assert [a.kind for a in after] == ["request_ceiling"]
    # state lost after the finding was sent (crash before the flush): made again, same id
    again = _run(TeamDetectors(Settings()), before_crossing, calls[300:])
    assert again[0].kind == "spend_ceiling" and again[0].anomaly_id == found[0].anomaly_id


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def _store_and_notify(broker: str, topics: Topics, client: Any, database: str,
                      notifier: AnomalyNotifier, findings: list[Anomaly]) -> None:
    """The findings onto the anomalies topic as the agent sends them; the store's sink
    (ClickHouse, then the notifier) consumes them all."""
    producer = Producer({"bootstrap.servers": broker})
    for anomaly in findings:
        producer.produce(topics.anomalies, key=anomaly.anomaly_id.encode(),
                         value=encode_anomaly(anomaly), headers=ANOMALY_HEADERS)
    producer.flush(30)
    handed: list[Anomaly] = []

    def on_stored(batch: list[Anomaly]) -> None:
        notifier.notify(batch)
        handed.extend(batch)

    kafka = KafkaSettings(embedded=True, bootstrap_servers=broker, topic_prefix=topics.prefix)
    sink = AnomalySink(kafka, StoreSettings(max_batch_time_s=0.2), AnomalyWriter(client, database),
                       on_stored=on_stored, group_id=f"{topics.prefix}-anomaly-sink")
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(handed) >= len(findings), 90, message="every finding handed on")
    finally:
        stop.set()
        thread.join(30)


@pytest.mark.store
def test_a_ceiling_finding_is_stored_once_listed_and_notified_with_its_cooldown(
        broker: str, topics: Topics, clickhouse: tuple[Any, str], slack: SlackStub) -> None:
    client, database = clickhouse
    found = _run(TeamDetectors(Settings()), {}, _loop(hours=2))
    settings = Settings(teams=[{"name": "platform", "slack_webhook": slack.url}],
                        budgets={"retry_base_s": 0})
    notifier = AnomalyNotifier(client, database, settings,
                               now=lambda: HOUR + timedelta(hours=3))
    _store_and_notify(broker, topics, client, database, notifier, [*found, found[0]])
    rows = client.query(
        "SELECT kind, detector, team, user, key_id, toString(window_start), observed, threshold, "
        f"cost_usd FROM {database}.anomalies FINAL ORDER BY window_start, kind").result_rows
    assert [tuple(row) for row in rows] == [
        ("request_ceiling", "hourly_ceiling", "platform", "newbie", "key_new",
         "2026-09-01 10:00:00", 1001.0, 1000.0, Decimal(0)),
        ("spend_ceiling", "hourly_ceiling", "platform", "newbie", "key_new",
         "2026-09-01 10:00:00", 50.125, 50.0, Decimal("50.125")),
        ("request_ceiling", "hourly_ceiling", "platform", "newbie", "key_new",
         "2026-09-01 11:00:00", 1001.0, 1000.0, Decimal(0)),
        ("spend_ceiling", "hourly_ceiling", "platform", "newbie", "key_new",
         "2026-09-01 11:00:00", 50.125, 50.0, Decimal("50.125"))]
    # the first hour's two findings are sent; the second hour's are within the cooldown
    assert sorted(slack.headers_of(i) for i in range(len(slack.payloads))) == [
        "Anomaly: request ceiling - key key_new", "Anomaly: spend ceiling - key key_new"]
    fields = [field["text"] for payload in slack.payloads for field in payload["blocks"][2]["fields"]]
    assert "*Ceiling*\n$50.00 an hour" in fields and "*Ceiling*\n1,000 requests an hour" in fields
    assert not any(text.startswith("*Expected*") for text in fields)
    ledger = client.query(f"SELECT state, count() FROM {database}.anomaly_notifications "
                          "WHERE channel = 'team' GROUP BY state ORDER BY state").result_rows
    assert [tuple(row) for row in ledger] == [("sent", 2), ("suppressed", 2)]
