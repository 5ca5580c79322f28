"""The gateway's added latency at concurrency 1, alone and while the pipeline runs beside it.

Issue 18 asks that the gateway's own figures stay where they are (added p50
≤ 1 ms at c=1) while the pipeline runs on the same machine. This bench starts
the embedded broker, the stub upstream and the gateway (as ``gateway_bench.py``
does), plus the real ``store`` and ``worker`` roles on the same broker and
topics. It measures the added latency twice with ``wrk`` at c=1:

1. with the pipeline idle (only the gateway's own envelopes flow);
2. while a producer puts ``--rate`` synthetic envelopes/s onto the envelopes
   topic, so the worker and the store run at that rate beside the gateway
   (about 45 % of the pipeline's measured capacity by default).

Printed: direct and gateway p50/p99, the added latency and its ratio to the
target, for both runs. Run: ``python bench/gateway_under_load.py``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from gateway_bench import BODIES, gateway_rig, start_gateway, wrk, wrk_missing
from pipeline_bench import EnvelopeSource, count_rows

from meterline.embedded import free_port
from meterline.schemas import Topics
from meterline.sinks.store_client import QueryError
from tests.harness import Role, write_config

ADDED_P50_TARGET_MS = 1.0
ADDED_P99_TARGET_MS = 3.0


def paced(source: EnvelopeSource, rate: float, stop: threading.Event) -> None:
    """Produce ``rate`` envelopes/s until ``stop``."""
    started = time.monotonic()
    due = 0
    while not stop.wait(0.01):
        want = int((time.monotonic() - started) * rate) - due
        if want > 0:
            source.produce(want)
            due += want
    source.flush()


def measure(url: str, stub: str, seconds: int, workdir: Any) -> dict[str, float]:
    direct = wrk(stub + "/v1/chat/completions", BODIES["whole"], 1, seconds, workdir)
    through = wrk(url + "/v1/chat/completions", BODIES["whole"], 1, seconds, workdir)
    return {"direct_p50": direct["p50_ms"], "direct_p99": direct["p99_ms"],
            "gateway_p50": through["p50_ms"], "gateway_p99": through["p99_ms"],
            "added_p50": through["p50_ms"] - direct["p50_ms"],
            "added_p99": through["p99_ms"] - direct["p99_ms"], "rps": through["rps"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=8000, help="pipeline envelopes/s")
    parser.add_argument("--seconds", type=int, default=15, help="per wrk run")
    args = parser.parse_args()
    if wrk_missing():
        return 2
    with gateway_rig("gateway-under-load") as (workdir, broker, processes):
        prefix = "load"
        gateway, url, stub = start_gateway(processes, broker, workdir, prefix)
        store_port = free_port()
        config = write_config(workdir / "pipeline.yaml", bootstrap=broker.bootstrap_servers,
                              prefix=prefix, chdb_path=workdir / "clickhouse",
                              gateway_port=free_port(), store_port=store_port,
                              demo_upstream="http://127.0.0.1:9",
                              extra={"kafka": {"partitions": 1}})
        roles = [Role("store", config, workdir).start(), Role("worker", config, workdir).start()]
        store_url = f"http://127.0.0.1:{store_port}"
        source = EnvelopeSource(broker.bootstrap_servers, Topics(prefix).envelopes)
        try:
            source.produce(200)
            source.flush()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # the pipeline is up once rows arrive
                try:
                    if count_rows(store_url) >= 200:
                        break
                except QueryError:  # the store is still starting
                    pass
                time.sleep(0.5)
            else:
                print("the pipeline stored nothing in 120 s", file=sys.stderr)
                return 1
            wrk(url + "/v1/chat/completions", BODIES["whole"], 2, 2, workdir)  # warm up
            idle = measure(url, stub, args.seconds, workdir)
            stop = threading.Event()
            feeder = threading.Thread(target=paced, args=(source, args.rate, stop), daemon=True)
            rows_before = count_rows(store_url)
            started = time.monotonic()
            feeder.start()
            loaded = measure(url, stub, args.seconds, workdir)
            stop.set()
            feeder.join()
            stored_rate = (count_rows(store_url) - rows_before) / (time.monotonic() - started)
        finally:
            for role in reversed(roles):
                role.stop()
        print("| pipeline | direct p50 / p99 ms | gateway p50 / p99 ms | added p50 ms | "
              "added p99 ms |")
        print("|---|---|---|---|---|")
        for name, row in (("idle", idle), (f"{args.rate:.0f} envelopes/s offered", loaded)):
            print(f"| {name} | {row['direct_p50']:.3f} / {row['direct_p99']:.3f} | "
                  f"{row['gateway_p50']:.3f} / {row['gateway_p99']:.3f} | "
                  f"{row['added_p50']:.3f} ({row['added_p50'] / ADDED_P50_TARGET_MS:.2f} of "
                  f"target) | {row['added_p99']:.3f} "
                  f"({row['added_p99'] / ADDED_P99_TARGET_MS:.2f} of target) |")
        print(f"\nThe pipeline stored {stored_rate:,.0f} rows/s during the loaded run "
              f"(gateway pid {gateway.pid}).")
        return 0


if __name__ == "__main__":
    sys.exit(main())
