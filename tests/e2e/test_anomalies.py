"""Issue 8's bar: planted anomalies in a simulated fortnight, found by the real pipeline.

Two weeks of ``Organisation.demo`` traffic (volume 0.3) with the four
incidents of ``meterline.simulator.anomalies`` go onto the envelopes topic
with their historical timestamps; the real worker (enrich) and detector (anomaly
agents with changelog-backed tables) and store (anomalies sink → ClickHouse, Slack
notifier) run as subprocesses. Each incident must appear in the ``anomalies``
table as a finding of the right kind, team and entity, detected (event time)
within its window; the team with a webhook must have been told on Slack.

The detector-restart test is part of the contract suite: on the embedded tansu
broker and on Apache Kafka (``backend``, tests/backends.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Consumer, TopicPartition

from meterline.processors import Directory, PriceBook, detector_app_id, enrich
from meterline.schemas import Envelope, KafkaSettings, Settings
from meterline.simulator.anomalies import Finding, PlantedAnomaly, Score, plant_anomalies, score
from meterline.simulator.drive import produce_envelopes
from meterline.simulator.organisation import Organisation
from tests.backends import Backend
from tests.harness import Pipeline, wait_until
from tests.reports.slack_stub import SlackStub, running_stub

pytestmark = [pytest.mark.e2e, pytest.mark.store]

SELF_HOSTED_PRICE = {"model": "acme-coder-34b", "provider": "vllm", "input_per_mtok": "0.2",
                     "output_per_mtok": "0.6"}
WEBHOOK_ENV = "METERLINE_TEST_ANOMALY_WEBHOOK"


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    yield from running_stub()


def _config(org: Organisation) -> dict[str, Any]:
    config = {**org.settings_overrides(), "prices": [SELF_HOSTED_PRICE], "anomalies": {
        # a replayed September is months old: notify it anyway, to see Slack work
        "notify_max_age_h": 1_000_000,
        # the spend floors scaled to the traffic (volume 0.3 of the defaults' calibration;
        # the benchmark runs the defaults at full volume)
        "defaults": {"min_hourly_spend_usd": 7.5, "min_daily_team_spend_usd": 40,
                     "share_min_team_spend_usd": 15}}}
    config["teams"][0]["slack_webhook_env"] = WEBHOOK_ENV
    return config


def _findings(pipeline: Pipeline) -> list[Finding]:
    rows = pipeline.sql("SELECT kind, team, details, toUnixTimestamp64Milli(detected_at) "
                        "FROM anomalies FINAL")
    return [Finding(kind, team, json.loads(details)["entity"],
                    datetime.fromtimestamp(int(ms) / 1000, tz=ZoneInfo("UTC")))
            for kind, team, details, ms in rows]


def _fortnight() -> tuple[dict[str, Any], list[Envelope], list[PlantedAnomaly]]:
    org = Organisation.demo(seed=7)
    zone = ZoneInfo(org.timezone)
    config = _config(org)
    settings = Settings(**config)
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})

    def cost_of(envelope: Envelope) -> float:
        return float(enrich(envelope, directory, book).cost_usd)

    envelopes, planted = plant_anomalies(org, datetime(2026, 9, 1, tzinfo=zone),
                                         datetime(2026, 9, 15, tzinfo=zone), volume=0.3,
                                         cost_of=cost_of)
    return config, envelopes, planted


def _wait_all_found(pipeline: Pipeline, planted: list[PlantedAnomaly]) -> Score:
    def all_found() -> Score | None:
        result = score(_findings(pipeline), planted)
        return result if not result.missed else None

    try:
        found: Score = wait_until(all_found, 120, interval_s=1.0, message="every planted anomaly")
    except AssertionError:
        findings = _findings(pipeline)
        print(pipeline.logs())
        print("missed:", score(findings, planted).missed)
        print("findings:", *sorted(map(str, findings)), sep="\n  ")
        raise
    return found


def test_each_planted_anomaly_is_found_within_its_window(
        tmp_path: Path, broker: str, simulator: str, slack: SlackStub,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, envelopes, planted = _fortnight()
    monkeypatch.setenv(WEBHOOK_ENV, slack.url)
    pipeline = Pipeline(tmp_path, broker, simulator, extra_config=config).start()
    try:
        kafka = KafkaSettings(embedded=True, bootstrap_servers=broker,
                              topic_prefix=pipeline.prefix)
        assert produce_envelopes(kafka, envelopes).failed == 0
        wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == str(len(envelopes)),
                   180, message=f"{len(envelopes)} events")
        result = _wait_all_found(pipeline, planted)
        assert result.found == [p.name for p in planted]
        # notified: the looping agent's team has a webhook (and an unpriced model)
        wait_until(lambda: len(slack.payloads) > 0, 30, message="a Slack message")
        assert any("request spike" in slack.headers_of(i) for i in range(len(slack.payloads)))
        ids = pipeline.sql("SELECT anomaly_id, count() FROM anomalies GROUP BY anomaly_id "
                           "HAVING count() > 1")
        assert ids == []  # each finding stored once
    finally:
        pipeline.stop()


def _committed(broker: str, group_id: str, topics: list[str]) -> dict[str, int]:
    """Offsets the consumer group ``group_id`` has committed, summed per topic."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group_id,
                         "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(2)]
        committed = dict.fromkeys(topics, 0)
        for tp in consumer.committed(partitions, timeout=10):
            committed[tp.topic] += max(tp.offset, 0)
        return committed
    finally:
        consumer.close()


def _month_state(broker: str, changelog: str) -> list[str]:
    """Every write of a team's month-to-date share state in ``changelog``, in order."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": f"debug-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([changelog])
    lines = []
    try:
        while (message := consumer.poll(5)) is not None:
            if message.error() is None and (message.key() or b"").startswith(b'"m|'):
                lines.append(f"{message.partition()}@{message.offset()} {message.key()!r}: "
                             f"{(message.value() or b'')[:200]!r}")
    finally:
        consumer.close()
    return lines


def test_detector_state_survives_a_detector_restart(tmp_path: Path, backend: Backend,
                                                    simulator: str) -> None:
    """Kill -9 the detector after the first week: the incidents of the second week need the
    first week's baselines and first-seen sets, which only the tables' changelogs hold.
    Enrichment runs in its own process and group, so its events keep flowing meanwhile."""
    config, envelopes, planted = _fortnight()
    config["teams"][0].pop("slack_webhook_env")  # no Slack here
    split = datetime(2026, 9, 8, 12, tzinfo=ZoneInfo(config["timezone"]))
    before = [e for e in envelopes if e.received_at < split]
    after = [e for e in envelopes if e.received_at >= split]
    broker = backend.bootstrap_servers
    pipeline = Pipeline(tmp_path, broker, simulator, extra_config=config,
                        embedded=backend.embedded).start()
    try:
        kafka = KafkaSettings(embedded=backend.embedded, bootstrap_servers=broker,
                              topic_prefix=pipeline.prefix)
        assert produce_envelopes(kafka, before).failed == 0
        # the whole first week routed, detected *and committed* (routing's commit on the
        # events topic too): a restart replays none of it, so nothing is counted twice
        group = detector_app_id(Settings(kafka=kafka))
        wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == str(len(before)),
                   180, message="first week's events")
        events, by_team = f"{pipeline.prefix}.events.v1", f"{pipeline.prefix}.anomaly-by-team.v1"
        seen: list[dict[str, int]] = []

        def caught_up() -> bool:
            seen.append(_committed(broker, group, [events, by_team]))
            return seen[-1] == {events: len(before), by_team: len(before)}
        try:
            wait_until(caught_up, 180, interval_s=1.0, message="first week committed by detectors")
        except AssertionError:
            print("committed:", seen[-1], pipeline.logs())
            raise
        pipeline.roles["detector"].kill()
        pipeline.roles["detector"].start()
        restarted_at = time.monotonic()
        assert produce_envelopes(kafka, after).failed == 0
        try:  # the new detector's group join waits out the killed member's session first
            wait_until(lambda: pipeline.scalar("SELECT count() FROM events")
                       == str(len(envelopes)), 300, message=f"{len(envelopes)} events")
        except AssertionError:
            print(pipeline.logs())
            raise
        try:
            result = _wait_all_found(pipeline, planted)
        except AssertionError:  # what the detector held per team month: lost state or not?
            print(*_month_state(broker, f"{group}-anomaly-team-changelog"), sep="\n")
            print("committed by the detectors:", _committed(broker, group, [events, by_team]),
                  "of", len(envelopes), "envelopes")
            print(pipeline.sql("SELECT team, sum(cost_usd), count() FROM events GROUP BY team"))
            raise
        found_s = time.monotonic() - restarted_at
        assert result.found == [p.name for p in planted]
        first_seen = {f.kind for f in _findings(pipeline) if f.entity == "acme-coder-70b"}
        assert first_seen == {"new_model", "unpriced_model"}  # not "learning" after the restart
        print(f"\ndetector restart on {backend.kind}: the second week's {len(after)} envelopes "
              f"produced and every planted anomaly found {found_s:.1f}s after the restart")
    finally:
        pipeline.stop()
