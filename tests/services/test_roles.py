"""The store role never runs half alive: a dead part takes the whole role down, loudly."""

from __future__ import annotations

import threading

import pytest

from meterline.services.roles import _check_alive


def crashing() -> None:
    raise RuntimeError("a bug in the audit sink")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_sink_thread_stops_the_store_naming_it() -> None:
    stop = threading.Event()
    alive = threading.Thread(target=stop.wait, name="event sink")
    crashed = threading.Thread(target=crashing, name="audit sink")
    alive.start()
    crashed.start()
    crashed.join()
    try:
        _check_alive([alive], queries_serving=True, scheduler_running=True)
        with pytest.raises(RuntimeError, match="the store's audit sink stopped unexpectedly"):
            _check_alive([alive, crashed], queries_serving=True, scheduler_running=True)
        with pytest.raises(RuntimeError, match="query endpoint, report scheduler"):
            _check_alive([alive], queries_serving=False, scheduler_running=False)
    finally:
        stop.set()
        alive.join()
