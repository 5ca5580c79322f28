"""One function per role. Each blocks until SIGINT/SIGTERM, then stops cleanly."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from meterline.schemas import Settings

log = logging.getLogger(__name__)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def run_gateway(settings: Settings, workers: int | None = None) -> int:
    """Serve the gateway (uvloop, httptools) until SIGINT/SIGTERM; returns the exit status.

    One process by default; ``workers`` (else ``gateway.workers``) above one
    runs that many on the gateway's port, each with its own spool
    (``gateway_workers``). Status 2 when it cannot start with this
    configuration, e.g. its spool is in use by another process.
    """
    import uvicorn

    from .gateway_workers import (
        CONFIG_ERROR_EXIT,
        UVICORN_OPTIONS,
        GatewayStartError,
        check_start,
        open_app,
        serve_workers,
    )

    count = settings.gateway.workers if workers is None else workers
    try:
        check_start(settings, count)
        if count > 1:
            return serve_workers(settings, count, _stop_on_signals())
        app = open_app(settings)
    except GatewayStartError as exc:
        print(f"meterline gateway: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    uvicorn.run(app, host=settings.gateway.host, port=settings.gateway.port, **UVICORN_OPTIONS)
    return 0


def run_worker(settings: Settings) -> None:
    """Run the enrichment loop (envelopes → events) until SIGINT/SIGTERM.

    A batch that cannot be made durable raises (``EmitFailed``): the process
    exits without committing, and its supervisor restarts it.
    """
    from meterline.processors import EnrichWorker

    stop = _stop_on_signals()
    EnrichWorker(settings).run(stop)


def run_detector(settings: Settings) -> None:
    """Run the anomaly detectors' faust app (events → anomalies)."""
    from meterline.processors import create_detector_app, detector_app_id

    _run_faust(settings, detector_app_id(settings), create_detector_app)


def _run_faust(settings: Settings, group_id: str, create: Callable[[Settings], Any]) -> None:
    """Run one faust app on uvloop until SIGINT/SIGTERM.

    uvloop, because faust spends much of each message in the event loop itself
    (tasks, futures, callbacks): libuv's loop makes that part cheaper.
    """
    import asyncio

    import faust
    import uvloop

    from meterline.kafka import policy_for

    if policy_for(settings.kafka).wait_for_dead_members:
        from meterline.embedded.group import wait_for_dead_members

        wait_for_dead_members(settings.kafka, group_id)  # see meterline/embedded/group.py
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create(settings)
    # faust's own INFO lines (rebalances, table recovery) are many: opt in when debugging
    worker = faust.Worker(app, loglevel=os.environ.get("METERLINE_FAUST_LOG_LEVEL", "WARNING"),
                          quiet=True)
    worker.execute_from_commandline()


def run_simulator(host: str, port: int) -> None:
    import uvicorn

    from meterline.simulator import create_provider_app

    uvicorn.run(create_provider_app(), host=host, port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


def _check_alive(sinks: list[threading.Thread], queries_serving: bool,
                 scheduler_running: bool) -> None:
    """Raise if a part of the store died: the role goes down loudly, never half alive.

    A sink thread ends only when ``stop`` is set; one that ended otherwise
    crashed (its traceback is in the log above, from ``threading.excepthook``).
    Exiting lets the supervisor (``meterline up``, compose's restart policy)
    start a whole store again, which resumes every sink from its committed offsets.
    """
    dead = [thread.name for thread in sinks if not thread.is_alive()]
    if not queries_serving:
        dead.append("query endpoint")
    if not scheduler_running:
        dead.append("report scheduler")
    if dead:
        raise RuntimeError(f"the store's {', '.join(dead)} stopped unexpectedly; exiting so the "
                           "store is restarted whole (see the log above)")


def run_store(settings: Settings) -> None:
    """Own ClickHouse: apply migrations, serve read-only queries, sink events, run reports.

    Start order matters: migrations before anything reads or writes; the query
    server before the sink so ``meterline sql`` answers while the sink's group
    join is still under way. Stop order is the reverse, and the sink finishes
    (and commits) its current batch before the process exits.

    Before the sink starts, the rollups are repaired for the hours of the last
    inserts (``repair_recent``): a crash between an events insert and its
    rollup view's insert is healed here. Store jobs (``POST /jobs/<name>``,
    see ``store_jobs``) share the sink's writer and its lock.
    """
    from meterline.governance.ledger import Ledger
    from meterline.reports import create_scheduler, register_jobs
    from meterline.sinks import (
        EventSink,
        EventWriter,
        JobRegistry,
        QueryServer,
        StoreAccess,
        connect,
        migrate,
        repair_recent,
    )

    from .store_jobs import register_provider_reconcile, register_store_jobs

    stop = _stop_on_signals()
    writer_client = connect(settings.clickhouse)
    migrate(writer_client, settings.clickhouse)
    jobs = JobRegistry()
    # Before any thread starts: a bad alert configuration stops start-up here, cleanly.
    scheduler = create_scheduler(settings)
    register_jobs(scheduler, settings, writer_client, jobs=jobs)
    writer = EventWriter(writer_client, settings.clickhouse.database)
    repaired = repair_recent(writer_client, settings.clickhouse.database)
    log.info("start-up rollup repair wrote %d delta rows", repaired)
    register_store_jobs(jobs, settings, writer)
    register_provider_reconcile(scheduler, jobs, settings)
    reader = connect(settings.clickhouse, readonly=True, database=settings.clickhouse.database,
                     limits=settings.store)
    ledger = Ledger(settings, connect(settings.clickhouse))
    queries = QueryServer(reader, settings.store.host, settings.store.port, jobs=jobs,
                          access=StoreAccess.for_store(settings),
                          max_sql_bytes=settings.store.max_query_bytes, ledger=ledger)
    queries.start()
    log.info("store query endpoint on %s", queries.url)
    sink = EventSink(settings.kafka, settings.store, writer)
    from meterline.reports.anomaly_notify import run_anomaly_sink
    from meterline.sinks.audit import run_audit_sink
    from meterline.sinks.key_events import run_key_sink
    sinks = [threading.Thread(target=target, args=args, name=name) for name, target, args in (
        ("event sink", sink.run, (stop,)), ("anomaly sink", run_anomaly_sink, (settings, stop)),
        ("audit sink", run_audit_sink, (settings, stop)),
        ("key sink", run_key_sink, (settings, connect(settings.clickhouse), stop)),
        ("ledger refresh", ledger.run_refresh, (stop,)))]
    for thread in sinks:
        thread.start()
    scheduler.start()
    try:
        while not stop.wait(0.5):
            _check_alive(sinks, queries.serving(), scheduler.running)
    finally:
        stop.set()
        for thread in sinks:
            thread.join(30)
        writer.close()
        scheduler.shutdown(wait=False)
        queries.stop()
