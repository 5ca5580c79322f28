"""Governance benchmark: what a limit or a blocking budget adds to a call at the gateway.

A call under a rate limit or a blocking budget asks the store's ledger before it goes
upstream (``governance.ledger``: one kept-alive HTTP round trip), and tells it what it
used when it ends. This measures that cost. It starts, on loopback, the embedded broker,
the store role (chdb, the ledger in it), a stub upstream and two gateway roles in front of
the stub: one whose key has no limit and whose team no blocking budget, and one whose key
has a (never reached) rpm/tpm limit and whose team a (never reached) blocking budget. Then
``wrk`` drives the same non-streamed chat completion at the stub directly and through each
gateway, at concurrency 1 and 64, and the table prints what each gateway adds, and the
governed gateway's throughput as a ratio of the ungoverned one's.

Run: ``python bench/governed_bench.py`` (about a minute; needs ``wrk``). Everything shares
this machine's cores: load generator, stub, both gateways, store and broker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from gateway_bench import (  # noqa: E402
    BODIES,
    KEY,
    gateway_argv,
    gateway_rig,
    wrk,
    wrk_missing,
)

from meterline.embedded import create_topics, free_port, wait_for_port  # noqa: E402
from meterline.ingest import hash_key  # noqa: E402
from meterline.ingest.auth import key_id_for  # noqa: E402
from meterline.schemas import Topics  # noqa: E402

TOKENS = {"METERLINE_STORE__READ_TOKEN": "bench-read-token-0123456789abcdefghijklmn",
          "METERLINE_STORE__OPERATOR_TOKEN": "bench-operator-token-0123456789abcdefghij"}


def config(workdir: Path, name: str, broker: str, store_port: int, upstream: str, *,
           gateway_port: int, governed: bool, prefix: str = "governed") -> Path:
    digest = hash_key(KEY)
    key: dict[str, Any] = {"id": key_id_for(digest), "sha256": digest, "user": "bench",
                           "team": "bench"}
    team: dict[str, Any] = {"name": "bench"}
    if governed:
        key.update(rpm=100_000_000, tpm=100_000_000_000)
        team.update(budget_usd=1_000_000_000, budget_mode="block")
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(workdir / "data"),
        "kafka": {"embedded": True, "bootstrap_servers": broker, "topic_prefix": prefix,
                  "partitions": 1},
        "clickhouse": {"dsn": f"chdb://{workdir / 'clickhouse'}"},
        "gateway": {"host": "127.0.0.1", "port": gateway_port,
                    "spool_dir": str(workdir / f"spool-{name}")},
        "store": {"host": "127.0.0.1", "port": store_port},
        "providers": {"openai": {"kind": "openai", "base_url": upstream,
                                 "api_key_env": "BENCH_UPSTREAM_KEY"}},
        "teams": [team], "keys": [key],
    }))
    return path


def store_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "meterline.cli.main", "--config", str(path), "store"]


def run(duration_s: int, concurrency: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with gateway_rig("governed-bench") as (workdir, broker, processes):
        create_topics(broker.bootstrap_servers, Topics("governed").all(), partitions=1)
        env = {**os.environ, **TOKENS, "BENCH_UPSTREAM_KEY": "sk-bench-upstream"}
        stub_port, store_port = free_port(), free_port()
        processes.start([sys.executable, str(REPO_ROOT / "bench" / "gateway_stub.py"),
                         "--port", str(stub_port)], workdir / "stub.log")
        stub = f"http://127.0.0.1:{stub_port}"
        urls = {"direct": stub}
        common = (broker.bootstrap_servers, store_port, stub)
        store_config = config(workdir, "store", *common, gateway_port=free_port(),
                              governed=False)
        processes.start(store_argv(store_config), workdir / "store.log", env=env)
        for name, governed in (("gateway", False), ("governed", True)):
            port = free_port()
            path = config(workdir, name, *common, gateway_port=port, governed=governed)
            processes.start(gateway_argv(path), workdir / f"{name}.log", env=env)
            wait_for_port("127.0.0.1", port, 30)
            urls[name] = f"http://127.0.0.1:{port}"
        wait_for_port("127.0.0.1", store_port, 60)
        time.sleep(2)  # the store's sinks and the ledger's first refresh
        target = "/v1/chat/completions"
        for conc in concurrency:
            wrk(urls["governed"] + target, BODIES["whole"], conc, 2, workdir)  # warm
            results = {name: wrk(url + target, BODIES["whole"], conc, duration_s, workdir)
                       for name, url in urls.items()}
            for name, result in results.items():
                row = {"target": name, "conc": conc, **result}
                if name != "direct":
                    row["added_p50"] = result["p50_ms"] - results["direct"]["p50_ms"]
                    row["added_p99"] = result["p99_ms"] - results["direct"]["p99_ms"]
                if name == "governed":
                    row["vs_ungoverned"] = result["rps"] / results["gateway"]["rps"]
                rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    if wrk_missing():
        return 1
    rows = run(args.duration, args.concurrency)
    print("| target | conc | p50 ms | p99 ms | req/s | errors | added p50 ms | added p99 ms | "
          "req/s vs ungoverned |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        added50 = f"{row['added_p50']:.3f}" if "added_p50" in row else ""
        added99 = f"{row['added_p99']:.3f}" if "added_p99" in row else ""
        ratio = f"{row['vs_ungoverned']:.2f}" if "vs_ungoverned" in row else ""
        print(f"| {row['target']} | {row['conc']} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
              f"{row['rps']:.0f} | {row['errors']:.0f} | {added50} | {added99} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
