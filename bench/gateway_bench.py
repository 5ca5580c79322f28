"""Gateway benchmark: the latency and throughput the gateway adds to a call.

Starts, on loopback: the embedded broker (envelopes are really produced and
spooled, as in production), a stub upstream (``gateway_stub.py``) and the
real ``meterline gateway`` role (one uvicorn worker) in front of it. Then,
for non-streamed and streamed chat completions at concurrency 1, 16 and 64,
``wrk`` drives the same request first directly at the stub and then through
the gateway; the difference is what the gateway adds. The streamed runs do
not ask for usage, so the gateway takes its heaviest path (it injects
``stream_options.include_usage`` and strips the extra chunk). Streaming
time to first byte is measured at concurrency 1 by ``gateway_ttfb.py``.

Run: ``python bench/gateway_bench.py`` (about two minutes; needs ``wrk``).
Everything shares this machine's cores: load generator, stub, gateway,
broker. LiteLLM's proxy is measured against the same stub if it is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from meterline.embedded import EmbeddedBroker, create_topics, free_port, wait_for_port  # noqa: E402
from meterline.ingest import hash_key  # noqa: E402
from meterline.ingest.auth import key_id_for  # noqa: E402
from meterline.schemas import Topics  # noqa: E402

KEY = "ml-bench-0123456789abcdefghijklmnopqrstuvwxyz"
MESSAGES = [{"role": "user", "content": "Say twenty words about spend."}]
BODIES = {
    "whole": orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}),
    "stream": orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}),
}
LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, body: bytes, concurrency: int, duration_s: int, workdir: Path, *,
        lua_extra: str = "") -> dict[str, float]:
    """One wrk run; ``lua_extra`` is appended to the script (a ``request`` function
    defined there builds each request's body itself, as ``egress_bench.py`` does)."""
    script = workdir / "bench.lua"
    script.write_text(LUA.format(body=body.decode(), key=KEY) + lua_extra)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRKJSON"))
    requests, duration_us, errors, p50_us, p99_us = (int(part) for part in line.split()[1:])
    return {"rps": requests / (duration_us / 1e6), "errors": errors,
            "p50_ms": p50_us / 1000, "p99_ms": p99_us / 1000}


def ttfb(url: str, count: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "gateway_ttfb.py"), url, KEY,
                          str(count)], capture_output=True, text=True, check=True)
    result: dict[str, float] = orjson.loads(out.stdout)
    return result


def write_config(path: Path, *, bootstrap: str, prefix: str, port: int, upstream: str) -> None:
    digest = hash_key(KEY)
    path.write_text(yaml.safe_dump({
        "data_dir": str(path.parent / "data"),
        "kafka": {"embedded": True, "bootstrap_servers": bootstrap, "topic_prefix": prefix},
        "gateway": {"host": "127.0.0.1", "port": port, "spool_dir": str(path.parent / "spool")},
        "providers": {"openai": {"kind": "openai", "base_url": upstream,
                                 "api_key_env": "BENCH_UPSTREAM_KEY"}},
        "keys": [{"id": key_id_for(digest), "sha256": digest, "user": "bench", "team": "bench"}],
    }))


def gateway_argv(config: Path) -> list[str]:
    """The production gateway role (``meterline gateway``: one uvicorn worker, uvloop,
    httptools), started through the library call the CLI makes, so the bench does not
    depend on every other CLI command importing cleanly."""
    code = ("import sys; from meterline.schemas import load_settings; "
            "from meterline.services import run_gateway; run_gateway(load_settings(sys.argv[1]))")
    return [sys.executable, "-c", code, str(config)]


def envelope_counts(gateway_url: str) -> dict[str, float]:
    with urllib.request.urlopen(gateway_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        for name in ("produced", "delivered", "spooled", "failed"):
            if line.startswith(f"meterline_envelopes_{name}_total "):
                counts[name] = float(line.split()[-1])
    return counts


class Processes:
    """Subprocesses started by the bench, stopped in reverse order."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                       env=env)
        self._started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self._started):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def wrk_missing() -> bool:
    """True (with the line that says how to install it) when ``wrk`` is not on the PATH."""
    if shutil.which("wrk") is not None:
        return False
    print("wrk not found: apt-get install wrk", file=sys.stderr)
    return True


@contextmanager
def gateway_rig(name: str) -> Iterator[tuple[Path, EmbeddedBroker, Processes]]:
    """One bench run's work dir, embedded broker and subprocesses; all stopped after it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    processes = Processes()
    broker.start()
    try:
        yield workdir, broker, processes
    finally:
        processes.stop()
        broker.stop()


def start_gateway(processes: Processes, broker: EmbeddedBroker, workdir: Path, prefix: str
                  ) -> tuple[subprocess.Popen[bytes], str, str]:
    """The stub upstream and the gateway role in front of it, on ``broker`` with topics
    under ``prefix``; (gateway process, gateway URL, stub URL) once both listen."""
    create_topics(broker.bootstrap_servers, Topics(prefix).all(), partitions=1)
    stub_port, gateway_port = free_port(), free_port()
    processes.start([sys.executable, str(REPO_ROOT / "bench" / "gateway_stub.py"),
                     "--port", str(stub_port)], workdir / "stub.log")
    stub = f"http://127.0.0.1:{stub_port}"
    config = workdir / "meterline.yaml"
    write_config(config, bootstrap=broker.bootstrap_servers, prefix=prefix, port=gateway_port,
                 upstream=stub)
    gateway = processes.start(gateway_argv(config), workdir / "gateway.log",
                              env={**os.environ, "BENCH_UPSTREAM_KEY": "sk-bench-upstream"})
    wait_for_port("127.0.0.1", stub_port, 15)
    wait_for_port("127.0.0.1", gateway_port, 30)
    return gateway, f"http://127.0.0.1:{gateway_port}", stub


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| mode | conc | target | p50 ms | p99 ms | req/s | errors | added p50 ms | "
            "added p99 ms | req/s vs direct |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        lines.append(f"| {row['mode']} | {row['conc']} | {row['target']} | {row['p50_ms']:.3f} | "
                     f"{row['p99_ms']:.3f} | {row['rps']:.0f} | {row['errors']:.0f} | "
                     f"{row.get('added_p50', '')} | {row.get('added_p99', '')} | "
                     f"{row.get('ratio', '')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--ttfb-requests", type=int, default=1000)
    args = parser.parse_args()
    if wrk_missing():
        return 2
    with gateway_rig("gateway-bench") as (workdir, broker, processes):
        gateway_process, gateway, stub = start_gateway(processes, broker, workdir, "bench")
        targets = {"direct": stub, "gateway": gateway}
        rss_idle_mb = memory_mb(gateway_process.pid)["VmRSS"]
        if importlib.util.find_spec("litellm") is None:
            print("LiteLLM proxy: not installed, not measured.", file=sys.stderr)
        else:
            print("LiteLLM proxy: installed, but this script does not drive it yet.",
                  file=sys.stderr)
        for url in targets.values():  # warm up connections and code paths
            wrk(url + "/v1/chat/completions", BODIES["whole"], 4, 2, workdir)
        rows: list[dict[str, Any]] = []
        for mode, body in BODIES.items():
            for concurrency in args.concurrency:
                found = {name: wrk(url + "/v1/chat/completions", body, concurrency,
                                   args.duration, workdir) for name, url in targets.items()}
                direct = found["direct"]
                for name, result in found.items():
                    row: dict[str, Any] = {"mode": mode, "conc": concurrency, "target": name,
                                           **result}
                    if name != "direct":
                        row["added_p50"] = f"{result['p50_ms'] - direct['p50_ms']:.3f}"
                        row["added_p99"] = f"{result['p99_ms'] - direct['p99_ms']:.3f}"
                        row["ratio"] = f"{result['rps'] / direct['rps']:.2f}"
                    rows.append(row)
                    print(f"{mode} c={concurrency} {name}: {result}", file=sys.stderr)
        first_bytes = {name: ttfb(url + "/v1/chat/completions", args.ttfb_requests)
                       for name, url in targets.items()}
        time.sleep(1.0)
        counts = envelope_counts(gateway)
        print(table(rows))
        direct_fb, gateway_fb = first_bytes["direct"], first_bytes["gateway"]
        print(f"\nStreaming time to first byte at concurrency 1 ({args.ttfb_requests} requests): "
              f"direct p50 {direct_fb['p50'] / 1000:.3f} ms, p99 {direct_fb['p99'] / 1000:.3f} ms; "
              f"gateway p50 {gateway_fb['p50'] / 1000:.3f} ms, p99 {gateway_fb['p99'] / 1000:.3f} ms; "
              f"added p50 {(gateway_fb['p50'] - direct_fb['p50']) / 1000:.3f} ms, "
              f"p99 {(gateway_fb['p99'] - direct_fb['p99']) / 1000:.3f} ms.")
        print(f"Envelopes: {', '.join(f'{k} {v:.0f}' for k, v in counts.items())}.")
        memory = memory_mb(gateway_process.pid)
        print(f"Gateway RSS: {rss_idle_mb:.0f} MB after start, {memory['VmRSS']:.0f} MB after the "
              f"runs, peak {memory['VmHWM']:.0f} MB (target ≤ 150 MB).")
        return 0


if __name__ == "__main__":
    sys.exit(main())
