"""Every benchmark, one after the other, as one markdown report on stdout.

Runs ``gateway_bench.py`` (added latency and throughput at concurrency 1/16/64,
streaming time to first byte, gateway RSS), ``pipeline_bench.py`` (envelopes/s
through broker → processors → ClickHouse, envelope-to-row latency; on tansu,
then on Apache Kafka),
``chargeback_bench.py`` at 1M and 10M events, ``anomaly_bench.py``
(precision and recall over a planted month) and ``policy_bench.py``
(sensitive-data detection: precision and recall per kind, cost per
message). Each prints its own tables; this script adds the date, the machine
and each run's wall time, and says which benchmark failed, if one did.

The benchmarks run one at a time, because they share this machine's cores.
Figures are ratios measured within one run; raw numbers are kept alongside.

Run: ``make bench`` (installs the dev dependencies and ``wrk``), or
``python bench/run_all.py [--quick]``. ``--quick`` skips the 10M-event
chargeback, whose data load takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def machine() -> str:
    """CPU model, core count and memory, as the README's figures quote them."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return (f"{os.cpu_count()} cores ({model}), {mem_kb / 1024 ** 2:.0f} GB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def run(title: str, argv: list[str]) -> bool:
    print(f"\n## {title}\n", flush=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, *argv], cwd=BENCH.parent, check=False)
    elapsed = time.monotonic() - started
    print(f"\n_{title}: {'ok' if result.returncode == 0 else f'FAILED (exit {result.returncode})'}"
          f", {elapsed:.0f} s wall._", flush=True)
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 10M-event chargeback")
    args = parser.parse_args()
    print(f"# Meterline benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"Machine: {machine()}.")
    runs = [
        ("Gateway: added latency, throughput, first byte, RSS", [str(BENCH / "gateway_bench.py")]),
        ("Gateway: memory through a store outage", [str(BENCH / "spool_outage_bench.py"),
                                                     *(["--steps", "2"] if args.quick else [])]),
        ("Pipeline on tansu: envelopes/s and envelope-to-row latency",
         [str(BENCH / "pipeline_bench.py")]),
        ("Pipeline on Apache Kafka: envelopes/s and envelope-to-row latency",
         [str(BENCH / "pipeline_bench.py"), "--kafka"]),
        ("Gateway: added latency while the pipeline runs", [str(BENCH / "gateway_under_load.py")]),
        ("Chargeback over 1M events", [str(BENCH / "chargeback_bench.py"),
                                       "--events", "1000000"]),
    ]
    if not args.quick:
        runs.append(("Chargeback over 10M events", [str(BENCH / "chargeback_bench.py"),
                                                    "--events", "10000000"]))
    runs.append(("Anomaly detection: precision and recall", [str(BENCH / "anomaly_bench.py")]))
    runs.append(("Sensitive-data detection: precision, recall and cost", [str(BENCH / "policy_bench.py")]))
    runs.append(("Egress gate: cost on the request path", [str(BENCH / "egress_bench.py")]))
    runs.append(("Audit bodies: storage saved by content addressing",
                 [str(BENCH / "audit_storage_bench.py"), *(["--quick"] if args.quick else [])]))
    failed = [title for title, argv in runs if not run(title, argv)]
    if failed:
        print(f"\nFailed: {', '.join(failed)}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
