"""Pipeline benchmark: envelopes/s through broker → processors → ClickHouse, and latency.

Runs the real ``store`` and ``worker`` roles as subprocesses on a private
embedded broker (tansu) and chdb path, produces synthetic envelopes straight
onto the envelopes topic with confluent-kafka, and reads the results back
through the store's query endpoint. Two phases:

1. **throughput**: a backlog of ``--backlog`` envelopes is put on the topic
   while the workers are stopped, then the workers start again; the sustained
   rate is rows made durable per second while the pipeline drains it (first to
   last ``inserted_at``), and each role's CPU per envelope is counted from the
   first drained row on.
2. **freshness**: first the capacity with the load generator live: envelopes
   are offered at the drain rate for 20 s, and the rows stored per second after
   the first 5 s are counted (whole inserts: at ~20k rows each, ±1 insert is
   ±1.3k/s) (the generator shares
   the pipeline's cores, as it does in the paced phases; the drain did not have
   it). Then envelopes are produced at paced rates, ``--load-fractions`` of that
   capacity (10 %, 50 %, 90 %), ``--seconds`` each;
   envelope-to-queryable-row latency is ``inserted_at - done_at`` per row
   (``done_at`` is stamped when the envelope is produced; ``inserted_at`` is
   the server clock when the row's part was committed, i.e. when it became
   queryable), reported as p50/p99/max per load, with the p99 against its
   target (≤ 1 s, ≤ 2 s, ≤ 5 s).

Run: ``python bench/pipeline_bench.py`` (about three minutes) on tansu, or with
``--kafka`` on a private Apache Kafka 4.x from ``deploy/kafka/kafka-local``, or
``--bootstrap HOST:PORT`` on a broker already running. Everything is on
loopback; the producer shares the machine's cores with the pipeline.
``--profile DIR`` adds py-spy profiles of the worker and the store during the
drain (``bench/profiles.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.bare_limits import bare_clickhouse_insert, bare_kafka_loop  # noqa: E402
from bench.profiles import Profiler, report  # noqa: E402
from meterline.embedded import EmbeddedBroker, create_topics, free_port  # noqa: E402
from meterline.processors.enrich import Directory, encode_event_row, event_row  # noqa: E402
from meterline.processors.price_book import PriceBook  # noqa: E402
from meterline.schemas import Envelope, Settings, Topics, new_request_id  # noqa: E402
from meterline.sinks import remote_query as _remote_query  # noqa: E402
from tests.backends import LocalKafka, fetch_kafka, kafka_version  # noqa: E402
from tests.harness import (  # noqa: E402
    TEST_STORE_READ_TOKEN,
    Role,
    unique_prefix,
    wait_until,
    write_config,
)


def remote_query(url: str, sql: str, fmt: str = "TabSeparatedWithNames",
                 timeout_s: float = 60.0, parameters: dict[str, Any] | None = None) -> bytes:
    """A query with the read credential the harness gives the store."""
    return _remote_query(url, sql, fmt, timeout_s, token=TEST_STORE_READ_TOKEN,
                         parameters=parameters)

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-5"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-haiku-4-5"), ("openai", "llama-3.3-70b-instruct"),
          ("openai", "my-selfhosted-model")]
USERS = [("alice", "platform"), ("bob", "payments"), ("chen", "data"), ("dana", "platform")]
REPOS = ["acme/api", "acme/web", "acme/infra", ""]
TOOLS = ["claude-code", "cursor", "codex-cli", "openai-python"]


def envelope_templates(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A varied pool of envelope bodies; ids and timestamps are stamped at produce time."""
    rng = random.Random(seed)
    pool = []
    for _ in range(count):
        provider, model = rng.choice(MODELS)
        user, team = rng.choice(USERS)
        anthropic = provider == "anthropic"
        pool.append({
            "schema_version": "1.0", "surface": "anthropic.messages" if anthropic
            else "openai.chat", "provider": provider, "requested_model": model,
            "served_model": model, "key_id": f"key_{rng.randrange(16**12):012x}", "user": user,
            "team": team, "repo": rng.choice(REPOS), "repo_source": "header",
            "tool": rng.choice(TOOLS), "user_agent": "bench/1.0", "status": 200, "outcome": "ok",
            "stream": rng.random() < 0.5,
            "usage": {"input_tokens": rng.randrange(10, 20_000),
                      "output_tokens": rng.randrange(1, 4_000),
                      "cache_read_tokens": rng.choice((0, 0, rng.randrange(1, 50_000))),
                      "cache_write_5m_tokens": rng.choice((0, 0, rng.randrange(1, 5_000)))
                      if anthropic else 0,
                      "cache_write_1h_tokens": rng.choice((0, 0, rng.randrange(1, 5_000)))
                      if anthropic else 0,
                      "reasoning_tokens": 0, "source": "provider"},
            "upstream_ms": rng.uniform(200, 9000), "gateway_ms": rng.uniform(0.2, 3),
            "request_bytes": rng.randrange(500, 200_000), "response_bytes": rng.randrange(200, 20_000),
            "body": {"policy": "hash", "request_sha256": "ab" * 32, "response_sha256": "cd" * 32},
        })
    return pool


class EnvelopeSource:
    """Produces envelopes onto the envelopes topic, stamping id and times on each."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                                   "compression.type": "lz4", "batch.num.messages": 10_000,
                                   "queue.buffering.max.messages": 1_000_000, "acks": "all"})
        self._topic = topic
        self.pool = self._pool = envelope_templates(2000)
        self._next = 0
        self.sent = 0

    def produce(self, count: int) -> None:
        now = datetime.now(UTC).isoformat()
        for _ in range(count):
            body = self._pool[self._next % len(self._pool)]
            self._next += 1
            body["request_id"] = new_request_id()
            body["received_at"] = body["first_byte_at"] = body["done_at"] = now
            while True:
                try:
                    self._producer.produce(self._topic, orjson.dumps(body),
                                           key=body["key_id"].encode())
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self.sent += 1
        self._producer.poll(0)

    def flush(self) -> None:
        self._producer.flush(60)


def event_rows(pool: list[dict[str, Any]], count: int) -> list[bytes]:
    """``count`` events rows as the worker encodes them, from the producer's envelope pool."""
    settings = Settings()
    directory = Directory(settings)
    book = PriceBook(settings.prices, {name: p.kind for name, p in settings.providers.items()})
    now = datetime.now(UTC).isoformat()
    rows = []
    for n in range(count):
        body = {**pool[n % len(pool)], "request_id": new_request_id(), "received_at": now,
                "first_byte_at": now, "done_at": now}
        rows.append(encode_event_row(event_row(Envelope.model_validate(body), directory, book)))
    return rows


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drain_with_memory(store_url: str, target: int, warm: int, backlog: int,
                      pids: dict[str, int]) -> dict[str, tuple[float, float, float]]:
    """Wait until ``target`` rows are stored, sampling each role's RSS every 2 s.

    Returns per role (RSS once 10 % of the backlog is stored, RSS at the end, peak), in
    MB: "flat" is the end against the 10 % mark, past the start-up allocations.
    """
    early: dict[str, float] = {}
    peak = dict.fromkeys(pids, 0.0)
    deadline = time.monotonic() + max(600.0, backlog / 2000)
    while (rows := count_rows(store_url)) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"backlog not drained: {rows - warm} of {backlog} rows")
        for name, pid in pids.items():
            now = rss_mb(pid)
            peak[name] = max(peak[name], now)
            if name not in early and rows - warm >= backlog // 10:
                early[name] = now
        time.sleep(2.0)
    last = {name: rss_mb(pid) for name, pid in pids.items()}
    return {name: (early.get(name, last[name]), last[name], max(peak[name], last[name]))
            for name in pids}


#: A backlog this small is produced in a second or two, well inside the group's
#: session timeout (6 s): the workers are paused for it (SIGSTOP) rather than
#: stopped, so they keep their group membership and partitions. Measured here,
#: two workers stopped and restarted at once on tansu sometimes never got their
#: partitions back (the group stayed empty for minutes).
PAUSE_MAX_BACKLOG = 300_000


def hold_workers(workers: list[Role], backlog: int, *, held: bool = True) -> None:
    """Hold the workers while the backlog is produced (``held``), or let them go again:
    paused and resumed for a short backlog, stopped and restarted for a long one."""
    pause = backlog <= PAUSE_MAX_BACKLOG
    for role in workers:
        if pause:
            os.kill(_pid(role.process), signal.SIGSTOP if held else signal.SIGCONT)
        elif held:
            role.stop()
        else:
            role.start()


def count_rows(store_url: str) -> int:
    return int(remote_query(store_url, "SELECT count() FROM events", "TabSeparated").strip())


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="meterline-bench-"))
    kafka = LocalKafka(workdir / "kafka", jvm_env=KAFKA_UNDER_LOAD) if args.kafka else None
    if kafka is not None:
        fetch_kafka()
        kafka.start()
        args.bootstrap = kafka.bootstrap_servers
    broker = None if args.bootstrap else EmbeddedBroker(log_path=workdir / "broker.log")
    if broker is not None:
        broker.start()
    bootstrap = args.bootstrap or (broker.bootstrap_servers if broker else "")
    prefix = unique_prefix("bench")
    topics = Topics(prefix)
    create_topics(bootstrap, topics.all(), partitions=args.partitions)
    store_port = free_port()
    config = write_config(workdir / "meterline.yaml", bootstrap=bootstrap,
                          prefix=prefix, chdb_path=workdir / "clickhouse", gateway_port=free_port(),
                          store_port=store_port, demo_upstream="http://127.0.0.1:9",
                          extra={"kafka": {"partitions": args.partitions,
                                           "embedded": broker is not None},
                                 "store": {"max_batch_time_s": args.sink_batch_s,
                                           "max_batch_size": args.sink_batch},
                                 "anomalies": {"enabled": args.anomalies}})
    store_url = f"http://127.0.0.1:{store_port}"
    roles = [Role("store", config, workdir).start()]
    # Each worker its own static member id on Apache Kafka (two on one host would fence
    # each other); the embedded broker ignores it.
    roles += [Role("worker", config, workdir, name=f"worker-{i + 1}",
                   env={"METERLINE_KAFKA__GROUP_INSTANCE_ID": f"bench-worker-{i + 1}"}).start()
              for i in range(args.workers)]
    source = EnvelopeSource(bootstrap, topics.envelopes)
    try:
        print(f"workdir {workdir}; waiting for the store and the worker's group join ...",
              flush=True)
        wait_until(lambda: _reachable(store_url), 90, message="store endpoint")
        # warm-up: a JVM broker compiles its hot paths over its first few hundred thousand
        # messages, which a fresh --kafka broker would otherwise spend inside the drain
        warm_up = args.warm if args.warm is not None else 500_000 if kafka else 500
        source.produce(warm_up)
        source.flush()
        wait_until(lambda: count_rows(store_url) >= warm_up, 300, 0.5, message="warm-up rows")
        warm = count_rows(store_url)

        # 1. throughput: drain a backlog put on the topic while the workers were held,
        # so the load generator does not share the cores with the drain it measures
        hold_workers(roles[1:], args.backlog)
        start = time.monotonic()
        source.produce(args.backlog)
        source.flush()
        produce_s = time.monotonic() - start
        hold_workers(roles[1:], args.backlog, held=False)
        # CPU is counted from the first backlog row on: a restarted worker's start-up
        # (imports, price book, group join) is not per-envelope work
        wait_until(lambda: count_rows(store_url) > warm, 120, 0.05, message="first drained row")
        pids = {f"worker {i + 1}": _pid(role.process) for i, role in enumerate(roles[1:])}
        pids.update(store=_pid(roles[0].process))
        if broker is not None:
            pids.update(broker=_pid(broker._process))
        if kafka is not None and kafka._process is not None:  # kafka-local execs the JVM
            pids.update(broker=kafka._process.pid)
        cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
        counted_from = count_rows(store_url)
        roles_only = {name: pid for name, pid in pids.items() if name != "broker"}
        profiler = Profiler(args.profile, roles_only) if args.profile else None
        with profiler or nullcontext():
            rss = drain_with_memory(store_url, warm + args.backlog, warm, args.backlog,
                                    roles_only)
        counted = warm + args.backlog - counted_from
        cpu_us = {name: (cpu_s(pid) - cpu_before[name]) / counted * 1e6
                  for name, pid in pids.items()}
        # one insert stamps one inserted_at on all its rows: distinct stamps count inserts
        first, last, inserts = (float(x) for x in remote_query(store_url, (
            "SELECT toUnixTimestamp64Milli(min(inserted_at)) / 1e3, "
            "toUnixTimestamp64Milli(max(inserted_at)) / 1e3, uniqExact(inserted_at) FROM events "
            "WHERE request_id > {boundary:String}"), "TabSeparated",
            parameters={"boundary": _boundary(store_url, warm)}).split())
        drain_rate = args.backlog / max(last - first, 1e-6)

        # 2. freshness: latency at paced rates, as fractions of the capacity with the load
        # generator live, since it shares the cores with the pipeline in the paced phases
        live_rate = live_capacity(source, store_url, LIVE_OVERLOAD * drain_rate)
        curve = [(fraction, paced_latency(source, store_url, fraction * live_rate,
                                          args.seconds))
                 for fraction in args.load_fractions]
        distinct = int(remote_query(store_url, "SELECT uniqExact(request_id) FROM events",
                                    "TabSeparated"))
        rows = count_rows(store_url)

        # 3. the physical limits, on the same machine, with the pipeline's roles stopped
        for role in reversed(roles):
            role.stop()
        # rates, so a million envelopes are enough however long the backlog was
        kafka_limit = bare_kafka_loop(bootstrap, topics.envelopes,
                                      min(source.sent, BARE_LOOP_MAX),
                                      partitions=args.partitions)
        # the median of three: one insert run of a few seconds varied 37-67k rows/s here
        bare_rows = event_rows(source.pool, min(args.backlog, BARE_LOOP_MAX))
        clickhouse_limit = statistics.median(bare_clickhouse_insert(bare_rows, args.sink_batch)
                                             for _ in range(3))
        limit = min(kafka_limit, clickhouse_limit)
        print()
        print("| measure                                   | value      |")
        print("|-------------------------------------------|------------|")
        print(f"| backlog envelopes                         | {args.backlog:>10} |")
        print(f"| producer rate (envelopes/s)               | {args.backlog / produce_s:>10.0f} |")
        print(f"| sustained drain, broker→CH (envelopes/s)  | {drain_rate:>10.0f} |")
        print(f"| sustained, load generator live (env/s)    | {live_rate:>10.0f} |")
        print(f"| store inserts in the drain (rows each)    | {inserts:.0f} ({args.backlog / inserts:.0f}) |")
        for fraction, (offered, p50, p99, pmax) in curve:
            at = f"at {fraction:.0%} ({offered:.0f}/s)"
            goal = FRESHNESS_P99_TARGET_MS.get(fraction)
            ratio = f" = {p99 / goal:.2f} of its target" if goal else ""
            print(f"| {'envelope→queryable p50 ' + at + ' (ms)':<41} | {p50:>10.0f} |")
            print(f"| {'envelope→queryable p99 ' + at + ' (ms)':<41} | {p99:>10.0f} |{ratio}")
            print(f"| {'envelope→queryable max ' + at + ' (ms)':<41} | {pmax:>10.0f} |")
        print(f"| rows / distinct ids / envelopes sent      | {rows}/{distinct}/{source.sent} |")
        for name, micros in cpu_us.items():
            print(f"| {name + ' CPU per envelope (µs)':<41} | {micros:>10.0f} |")
        for name, (early, last, peak) in rss.items():
            print(f"| {name + ' RSS at 10 % / end / peak (MB)':<41} | "
                  f"{early:.0f} / {last:.0f} / {peak:.0f} ({last / early - 1:+.0%}) |")
        print(f"| bare Kafka consume→produce (msg/s)        | {kafka_limit:>10.0f} |")
        print(f"| bare ClickHouse insert (rows/s)           | {clickhouse_limit:>10.0f} |")
        print(f"| pipeline / slower bare loop               | {drain_rate / limit:>10.0%} |")
        capacity = (os.cpu_count() or 1) / sum(cpu_us.values()) * 1e6
        print(f"| CPU-bound capacity, all cores (env/s)     | {capacity:>10.0f} |")
        name = "tansu" if broker else f"Apache Kafka {kafka_version()}" if kafka else "kafka"
        print(f"| broker                                    | {name:>10} |")
        print(f"| worker processes                          | {args.workers:>10} |")
        print(f"| anomaly agents in the worker              | {args.anomalies!s:>10} |")
        print(f"| load average during the run               | {os.getloadavg()[0]:>10.1f} |")
        if profiler is not None:
            report(profiler, list(roles_only))
    finally:
        for role in reversed(roles):
            role.stop()
        if broker is not None:
            broker.stop()
        if kafka is not None:
            kafka.stop()
        if args.keep:
            print(f"logs kept in {workdir}")


#: The broker's JVM as Apache Kafka's own scripts (and the apache/kafka image that
#: docker-compose.yml runs) start it: 1 GiB heap, G1, the full JIT. kafka-local's
#: default is tuned for a test's fast start (C1 only, serial GC), which costs the
#: broker about twice the CPU per message under load.
KAFKA_UNDER_LOAD = {"KAFKA_HEAP_OPTS": "-Xms1g -Xmx1g",
                    "KAFKA_JVM_PERFORMANCE_OPTS": "-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "
                                                  "-XX:InitiatingHeapOccupancyPercent=35"}

#: The bare loops measure rates: they copy at most this many envelopes.
BARE_LOOP_MAX = 1_000_000

#: Freshness p99 targets (issue 18) by load, as a fraction of measured capacity.
FRESHNESS_P99_TARGET_MS = {0.1: 1000.0, 0.5: 2000.0, 0.9: 5000.0}


#: The live-capacity phase offers the drain rate for ``LIVE_S`` seconds and counts the
#: rows stored after ``LIVE_SETTLE_S``: what the pipeline keeps up with while the
#: generator runs, at most the drain rate. Offering more would cost the generator more
#: CPU than the paced phases give it and lower the figure (measured here, tansu, two
#: workers: offered 1.2x a 37k/s drain, it counted 22k/s).
LIVE_OVERLOAD = 1.0
LIVE_S = 20.0
LIVE_SETTLE_S = 5.0


def pace(source: EnvelopeSource, rate: float, seconds: float) -> int:
    """Produce at ``rate`` envelopes/s for ``seconds`` (flushed); how many were produced."""
    tick_s = 0.01
    started = time.monotonic()
    due = 0
    while (elapsed := time.monotonic() - started) < seconds:
        want = int(elapsed * rate) - due
        if want > 0:
            source.produce(want)
            due += want
        time.sleep(tick_s)
    source.flush()
    return due


def live_capacity(source: EnvelopeSource, store_url: str, rate: float) -> float:
    """Rows stored per second while the load generator offers more than that (``rate``).

    The paced phases run the generator on the pipeline's cores; the backlog drain
    does not. Their loads are fractions of this rate, the capacity under the same
    conditions, so "90 %" is 90 % of what the machine can do while generating it.
    """
    rows_before = count_rows(store_url)
    since = time.time()
    due = pace(source, rate, LIVE_S)
    time.sleep(2.0)  # an insert stamps its rows when it starts: let the last ones commit
    stored = int(remote_query(store_url, (
        "SELECT count() FROM events WHERE inserted_at >= fromUnixTimestamp64Milli("
        "{start:Int64}) AND inserted_at < fromUnixTimestamp64Milli({end:Int64})"),
        "TabSeparated", parameters={"start": int((since + LIVE_SETTLE_S) * 1000),
                                    "end": int((since + LIVE_S) * 1000)}))
    wait_until(lambda: count_rows(store_url) >= rows_before + due, 300, 0.5,
               message=f"rows offered at {rate:.0f}/s")
    return stored / (LIVE_S - LIVE_SETTLE_S)


def paced_latency(source: EnvelopeSource, store_url: str, rate: float, seconds: float
                  ) -> tuple[float, float, float, float]:
    """Produce at ``rate`` for ``seconds``, wait for every row; (offered rate, p50, p99, max)
    of envelope → queryable row in ms."""
    rows_before = count_rows(store_url)
    since = datetime.now(UTC).isoformat()
    due = pace(source, rate, seconds)
    wait_until(lambda: count_rows(store_url) >= rows_before + due, 300, 0.5,
               message=f"rows paced at {rate:.0f}/s")
    p50, p99, pmax = (float(x) for x in remote_query(store_url, (
        "SELECT quantileExact(0.5)(ms), quantileExact(0.99)(ms), max(ms) FROM (SELECT "
        "dateDiff('millisecond', done_at, inserted_at) AS ms FROM events "
        "WHERE done_at >= parseDateTime64BestEffort({since:String}, 6))"), "TabSeparated",
        parameters={"since": since}).split())
    return due / seconds, p50, p99, pmax


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    assert process is not None
    return process.pid


def _reachable(url: str) -> bool:
    try:
        remote_query(url, "SELECT 1", "TabSeparated", timeout_s=2)
    except Exception:  # noqa: BLE001 (any failure means not yet)
        return False
    return True


def _boundary(store_url: str, warm: int) -> str:
    """The largest request id of the warm-up rows (ids are time-ordered)."""
    return remote_query(store_url, "SELECT request_id FROM events ORDER BY request_id "
                        "LIMIT 1 OFFSET {skip:UInt64}", "TabSeparated",
                        parameters={"skip": warm - 1}).decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--load-fractions", type=float, nargs="+", default=[0.1, 0.5, 0.9],
                        help="paced phases, as fractions of the drain rate measured first")
    parser.add_argument("--seconds", type=float, default=20, help="per paced phase")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one group)")
    parser.add_argument("--sink-batch", type=int, default=20_000)
    parser.add_argument("--sink-batch-s", type=float, default=0.25)
    parser.add_argument("--keep", action="store_true", help="print the work dir with logs")
    parser.add_argument("--bootstrap", default="",
                        help="an Apache Kafka broker to run on (default: a private embedded tansu)")
    parser.add_argument("--kafka", action="store_true",
                        help="run on a private Apache Kafka 4.x (deploy/kafka/kafka-local, the "
                             "broker the tests run) instead of tansu")
    parser.add_argument("--anomalies", action=argparse.BooleanOptionalAction, default=False,
                        help="run the anomaly agents in the worker too (default: off; issue 5 "
                             "measures broker -> processors -> ClickHouse)")
    parser.add_argument("--warm", type=int, default=None, metavar="N",
                        help="envelopes drained before measuring (default 500; 500,000 with "
                             "--kafka, for the JVM's JIT)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy profiles of the worker and store during the drain, "
                             "written to DIR and summarised after the table")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
