"""A simulated organisation's last month and this month, loaded once into a real pipeline,
and the distribution's Chromium driven by Playwright.

The month goes in as envelopes on the pipeline's own topic (``produce_envelopes``),
so every figure the dashboard shows went through the real worker, sink and
rollups. One pipeline serves the whole module: loading a month takes most of
the runtime, and the dashboard tests only read.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterline.ingest.auth import mint_key
from meterline.schemas import KafkaSettings, Settings, keys_file_for
from meterline.simulator.drive import produce_envelopes
from meterline.simulator.organisation import Organisation
from meterline.simulator.routing import route_envelopes
from tests.harness import REPO_ROOT, Pipeline, wait_until
from tests.traffic import ROUTING_RULES

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
VOLUME = 0.1


@dataclass(frozen=True, slots=True)
class Loaded:
    """The running pipeline, who can log in, and the month that was loaded."""

    pipeline: Pipeline
    org: Organisation
    admin_key: str
    lead_key: str
    lead_team: str
    last_month_start: datetime
    this_month_start: datetime
    calls: int


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, broker: str, simulator: str) -> Iterator[Loaded]:
    org = Organisation.demo(seed=5)
    zone = ZoneInfo(org.timezone)
    now = datetime.now(zone)
    this_month = datetime(now.year, now.month, 1, tzinfo=zone)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    envelopes = [*org.envelopes(last_month, this_month, volume=VOLUME),
                 *org.envelopes(this_month, now - timedelta(minutes=5), volume=VOLUME)]
    config = {**org.settings_overrides(), **ROUTING_RULES}
    envelopes = list(route_envelopes(Settings(**config), envelopes))
    pipeline = Pipeline(tmp_path_factory.mktemp("ui"), broker, simulator,
                        extra_config=config).start()
    try:
        kafka = KafkaSettings(embedded=True, bootstrap_servers=broker, topic_prefix=pipeline.prefix)
        result = produce_envelopes(kafka, envelopes)
        assert result.failed == 0
        wait_until(lambda: pipeline.scalar("SELECT count() FROM events") == str(len(envelopes)), 150,
                   message=f"{len(envelopes)} events stored")
        keys_file = keys_file_for(str(pipeline.config))
        admin_key, _ = mint_key(keys_file, user="root", team="platform", name="ui-admin", admin=True)
        lead_team = org.teams[1].name
        lead_key, _ = mint_key(keys_file, user="lead", team=lead_team, name="ui-lead")
        yield Loaded(pipeline, org, admin_key, lead_key, lead_team, last_month, this_month,
                     len(envelopes))
    finally:
        pipeline.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the distribution (``make install-dev`` installs it)."""
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: run `make install-dev`"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def screenshot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
