"""``meterline up`` supervises its roles and stops cleanly, losing nothing it accepted.

- Under traffic, the worker, the store, the detector and the broker are each
  SIGKILLed in turn. ``up`` restarts each one (counted in the gateway's
  ``/metrics``); the gateway answers every call throughout; afterwards every
  served call is stored exactly once and the books balance.
- Ctrl-C under traffic stops every process of ``up`` within five seconds;
  the next ``up`` on the same data stores every call the first one served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_durability import DRAIN_TIMEOUT_S, Traffic, assert_books, stored
from tests.e2e.up_harness import UpRun
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.store]

#: Calls the gateway must serve while each killed role is down or coming back.
CALLS_DURING_EACH_FAULT = 100


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpRun]:
    running = UpRun(tmp_path).start()
    yield running
    running.stop()


def role_restarts(up: UpRun) -> dict[str, float]:
    """``meterline_role_restarts_total`` per role, as the gateway's ``/metrics`` shows it."""
    text = httpx.get(up.gateway_url + "/metrics", timeout=10).text
    return {sample.labels["role"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "meterline_role_restarts_total"}


def kill_and_recover(up: UpRun, traffic: Traffic, role: str) -> float:
    """SIGKILL ``role``; wait for its restart, calls served meanwhile, and rows flowing again.

    Returns the seconds from the kill until new rows were stored.
    """
    restarts_before, served_before = up.kill_role(role), traffic.count()
    killed_at = time.monotonic()
    up.wait_restarted(role, restarts_before)
    wait_until(lambda: traffic.count() >= served_before + CALLS_DURING_EACH_FAULT, 60, 0.2,
               message=f"calls served while the {role} was down")
    stored_before = stored(up)
    wait_until(lambda: stored(up) > stored_before, DRAIN_TIMEOUT_S, 0.5,
               message=f"rows stored again after the {role} restart")
    return time.monotonic() - killed_at


def test_each_role_sigkilled_in_turn_is_restarted_and_every_call_stored_once(up: UpRun) -> None:
    key = up.mint_key("alice", "platform", repo="acme/api")
    recovery: dict[str, float] = {}
    with Traffic(up.gateway_url, key) as traffic:
        wait_until(lambda: stored(up) > 0, 120, 0.5, message="first rows stored")
        for role in ("worker", "store", "detector", "broker"):
            recovery[role] = kill_and_recover(up, traffic, role)
    assert traffic.bad == [], traffic.bad[:5]
    served = traffic.served
    wait_until(lambda: stored(up) >= len(served), DRAIN_TIMEOUT_S, 1.0,
               message=f"all {len(served)} served calls stored")
    assert_books(up, served)
    assert role_restarts(up) == {"broker": 1, "simulator": 0, "store": 1, "worker": 1,
                                 "detector": 1, "gateway": 0}
    restarts = {role: figures["restarts"] for role, figures in up.state().items()}
    assert restarts == {"broker": 1, "simulator": 0, "store": 1, "worker": 1, "detector": 1,
                        "gateway": 0}, restarts
    assert "worker exited with code -9; restarting it" in up.output()
    print(f"\nup supervision: {len(served)} calls served, all stored once; time from SIGKILL to "
          "rows flowing again: " + ", ".join(f"{role} {s:.1f}s" for role, s in recovery.items()))


def test_ctrl_c_under_traffic_stops_everything_in_5s_and_loses_nothing(tmp_path: Path) -> None:
    first = UpRun(tmp_path).start()
    try:
        key = first.mint_key("bob", "payments", repo="acme/billing")
        with Traffic(first.gateway_url, key) as traffic:
            wait_until(lambda: traffic.count() >= 200, 60, 0.2, message="calls served")
            stopped_in_s = first.interrupt()
    finally:
        first.stop()
    assert stopped_in_s <= 5.0, f"up took {stopped_in_s:.1f}s to stop"
    served = traffic.served
    assert len(served) >= 200
    assert "stopped in" in first.output()

    # Same data, spool and keys; new ports and topic prefix (the broker is new anyway).
    second = UpRun(tmp_path).start()
    try:
        wait_until(lambda: stored(second) >= len(served), DRAIN_TIMEOUT_S, 1.0,
                   message=f"all {len(served)} calls served before Ctrl-C stored")
        assert_books(second, served)
    finally:
        second.stop()
    print(f"\nCtrl-C: {len(served)} calls served, up stopped in {stopped_in_s:.1f}s; all stored "
          f"once by the next up (ready in {second.started_in_s:.1f}s)")
