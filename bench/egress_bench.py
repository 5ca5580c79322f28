"""Egress gate benchmark: what the egress policy adds to a call on the gateway's request path.

Same setup as ``gateway_bench.py``, whose machinery this imports: on loopback,
the embedded broker, the stub upstream, and the real ``meterline gateway``
role (one uvicorn worker), here one gateway process per configuration:

1. ``baseline``: default settings (audit mode, no rules, no body key: nothing
   is sealed or shipped; the messages are still split and hashed);
2. ``audit + ship``: five repo rules in audit mode and a body key: each
   message not sent before is sealed (AES-GCM) and produced to Kafka after
   the response;
3. ``rules enforce``: the same rules in enforce mode, no body key; the calls'
   repository is allowed, so they are judged and forwarded;
4. ``sensitive enforce``: rules in enforce mode, a body key, and
   ``egress.sensitive.mode: enforce``: every message the gateway has not seen
   clean is scanned inline for credentials (detect-secrets) before the call
   leaves, in a worker thread.

Bodies (OpenAI chat, a 3 kB system prompt, text that is this repository's
source as a coding agent's file reads, checked clean by the scanner so no call
is refused): ``new 4 kB`` (one new 4 kB message per call: every call scans),
``conversation`` (sessions that grow by one new 0.3-4 kB message per call up
to 40 turns, about 100 kB, then start over; two sessions per connection, so
a session's previous call has ended when its next one starts: the gateway's
LRU of clean messages skips all but the last message), ``new 50 kB`` (one new
50 kB message per call). wrk's ``request`` function builds each body, with a
per-run tag so no message repeats across runs. For each body and concurrency
(1, then 64), in rounds, wrk drives the stub directly, then each gateway;
added = gateway - direct of the same round (as in ``gateway_bench.py``), and
the table gives the median of the rounds. Then each step of the gate is timed
alone in this process, per call, to show where the added time goes.

Run: ``python3 bench/egress_bench.py [--duration S] [--rounds N]`` (about
three minutes at the default 3 rounds of 2 s; needs ``wrk``). Everything
shares this machine's cores: on a machine where other work runs, p99 at c=1
moves by a millisecond or more between runs; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import yaml
from gateway_bench import (
    REPO_ROOT,
    Processes,
    envelope_counts,
    gateway_argv,
    gateway_rig,
    memory_mb,
    write_config,
    wrk,
    wrk_missing,
)

from meterline.embedded import create_topics, free_port, wait_for_port
from meterline.policy.messages import RequestMessage, message_hash, request_messages
from meterline.policy.rules import EgressPolicy
from meterline.policy.seal import Sealer
from meterline.policy.sensitive import DEFAULT_SECRET_KINDS, SensitiveScanner
from meterline.schemas import AuditMessage, EgressSettings, Topics

REPO = "acme/platform-api"
RULES: list[dict[str, Any]] = [
    {"name": "payments-restricted", "repos": ["acme/payments*", "acme/ledger*"],
     "classification": "restricted", "providers": ["vllm"], "body_policy": "none"},
    {"name": "infra", "repos": ["acme/infra-*", "acme/terraform-*"], "providers": ["anthropic"]},
    {"name": "ml-research", "repos": ["acme/ml-*"], "models": ["claude-*", "gpt-4o*"]},
    {"name": "mobile", "repos": ["acme/ios-*", "acme/android-*"], "providers": ["openai"]},
    {"name": "platform", "repos": ["acme/platform*"], "classification": "internal",
     "providers": ["openai", "anthropic"], "models": ["gpt-4o*", "claude-*"]},
]
"""The calls' repository matches the last rule, so every rule's patterns are tried."""
EXCEPTIONS = [{"rule": "infra", "users": ["alice"], "until": "2030-12-31", "reason": "SEC-42"}]


@dataclass(frozen=True)
class Config:
    name: str
    egress: dict[str, Any]
    body_key: bool
    bodies: tuple[str, ...]


CONFIGS = (
    Config("1. baseline", {}, False, ("new 4 kB", "conversation", "new 50 kB")),
    Config("2. audit + ship", {"rules": RULES, "exceptions": EXCEPTIONS}, True,
           ("new 4 kB", "conversation")),
    Config("3. rules enforce", {"mode": "enforce", "rules": RULES, "exceptions": EXCEPTIONS}, False,
           ("new 4 kB", "conversation")),
    Config("4. sensitive enforce", {"mode": "enforce", "rules": RULES, "exceptions": EXCEPTIONS,
                                    "sensitive": {"mode": "enforce"}}, True,
           ("new 4 kB", "conversation", "new 50 kB")),
)
MAX_TURNS = 40
BODIES = ("new 4 kB", "conversation", "new 50 kB")


def source_reads(rng: random.Random, size: int, scanner: SensitiveScanner) -> str:
    """``size`` characters of this repository's source, as an agent's numbered file reads,
    holding nothing the gateway's scanner finds (else the gateway would refuse the call)."""
    files = sorted(path for folder in ("ingest", "processors", "sinks", "schemas", "reports")
                   for path in (REPO_ROOT / folder).rglob("*.py"))
    while True:
        parts: list[str] = []
        while sum(map(len, parts)) < size:
            path = rng.choice(files)
            lines = path.read_text().splitlines()
            start = rng.randrange(max(1, len(lines) - 20))
            numbered = "\n".join(f"{start + i + 1:>6}\t{line}"
                                 for i, line in enumerate(lines[start:start + 120]))
            parts.append(f"Read({path.relative_to(REPO_ROOT)})\n{numbered}\n")
        text = "".join(parts)[:size]
        if not scanner.scan(text):
            return text


def lua_string(text: str) -> str:
    """``text`` JSON-escaped (without quotes) in a Lua long string."""
    escaped = orjson.dumps(text).decode()[1:-1]
    if "]==]" in escaped:
        raise ValueError("text closes the Lua long string")
    return f"[==[{escaped}]==]"


def body_scripts(rng: random.Random) -> dict[str, str]:
    """wrk ``request`` functions building each body kind; ``drive`` fills in ``__RUN__``
    (a tag unique to the run) and ``__SESSIONS__`` (two per connection)."""
    scanner = SensitiveScanner(DEFAULT_SECRET_KINDS)
    system = ("You are a coding agent working in this repository. Read before you edit; "
              "run the tests you touch.\n" + source_reads(rng, 3000, scanner))
    common = (f'wrk.headers["X-Meterline-Repo"] = "{REPO}"\nlocal run, n = "__RUN__", 0\n'
              f'local head = \'{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"\' .. '
              f'{lua_string(system)} .. \'"}}\'\n')

    def pool(sizes: list[int]) -> str:
        return "local pool = {" + ",\n".join(lua_string(source_reads(rng, s, scanner))
                                             for s in sizes) + "}\n"

    def one_new(size: int, count: int) -> str:
        return common + pool([size] * count) + """
request = function()
  n = n + 1
  local text = '[' .. run .. ' call ' .. n .. '] ' .. pool[(n % #pool) + 1]
  return wrk.format(nil, nil, nil, head .. ',{"role":"user","content":"' .. text .. '"}]}')
end
"""

    # Two sessions per connection, taken in turn: a session's previous call has almost
    # always ended when its next one starts, as for an agent waiting on each answer.
    conversation = common + pool([rng.randrange(300, 4000) for _ in range(64)]) + f"""
local sessions, count, at = {{}}, __SESSIONS__, 0
request = function()
  n = n + 1
  at = at % count + 1
  local turns = sessions[at] or {{}}
  if #turns >= {MAX_TURNS} then turns = {{}} end
  sessions[at] = turns
  local role = (#turns % 2 == 0) and "user" or "assistant"
  turns[#turns + 1] = '{{"role":"' .. role .. '","content":"[' .. run .. ' turn ' .. n .. '] ' ..
    pool[(n % #pool) + 1] .. '"}}'
  return wrk.format(nil, nil, nil, head .. "," .. table.concat(turns, ",") .. "]}}")
end
"""
    return {"new 4 kB": one_new(4000, 32), "conversation": conversation,
            "new 50 kB": one_new(50_000, 8)}


@dataclass
class Gateway:
    config: Config
    url: str
    pid: int
    prefix: str
    idle_rss_mb: float
    rounds: dict[tuple[str, int], list[dict[str, float]]] = field(default_factory=dict)
    """Per (body, concurrency), one entry per round: added p50 and p99 (this run minus the
    direct run just before it), req/s and errors."""


def start_gateway(config: Config, index: int, workdir: Path, processes: Processes,
                  bootstrap: str, stub: str) -> Gateway:
    folder = workdir / f"gateway-{index}"
    folder.mkdir()
    prefix, port = f"egress{index}", free_port()
    create_topics(bootstrap, Topics(prefix).all(), partitions=1)
    path = folder / "meterline.yaml"
    write_config(path, bootstrap=bootstrap, prefix=prefix, port=port, upstream=stub)
    if config.egress:
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "egress": config.egress}))
    env = {k: v for k, v in os.environ.items() if k != "METERLINE_EGRESS__BODY_KEY"}
    env["BENCH_UPSTREAM_KEY"] = "sk-bench-upstream"
    if config.body_key:
        env["METERLINE_EGRESS__BODY_KEY"] = base64.b64encode(os.urandom(32)).decode()
    process = processes.start(gateway_argv(path), folder / "gateway.log", env=env)
    wait_for_port("127.0.0.1", port, 30)
    return Gateway(config, f"http://127.0.0.1:{port}", process.pid, prefix,
                   memory_mb(process.pid)["VmRSS"])


def drive(url: str, script: str, concurrency: int, duration_s: int, workdir: Path) -> dict[str, float]:
    lua = script.replace("__RUN__", uuid.uuid4().hex[:10]).replace(
        "__SESSIONS__", str(2 * concurrency))
    return wrk(url + "/v1/chat/completions", b"{}", concurrency, duration_s, workdir, lua_extra=lua)


def shipped(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "egress-bench"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}" if base > 0.005 else "n/a"


def median_of(rounds: list[dict[str, float]], name: str) -> float:
    return statistics.median(r[name] for r in rounds)


def print_table(gateways: list[Gateway], direct: dict[tuple[str, int], list[dict[str, float]]]) -> None:
    print("| configuration | body | added p50 ms, c=1 | added p99 ms, c=1 | req/s, c=64 "
          "| added p99 ms, c=64 | RSS peak MB | vs baseline (p50, p99 c=1; req/s, p99 c=64) "
          "| meets p50 ≤ 1, p99 ≤ 3 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---|:-:|")
    for body in BODIES:
        base: list[float] = []
        for gateway in gateways:
            if body not in gateway.config.bodies:
                continue
            one, many = gateway.rounds[(body, 1)], gateway.rounds[(body, 64)]
            found = [median_of(one, "added_p50"), median_of(one, "added_p99"), median_of(many, "rps"),
                     median_of(many, "added_p99")]
            base = base or found
            versus = ("1" if found is base else
                      ", ".join(ratio(a, b) for a, b in zip(found, base, strict=True)))
            meets = "yes" if found[0] <= 1.0 and found[1] <= 3.0 else "no"
            print(f"| {gateway.config.name} | {body} | {found[0]:.2f} | {found[1]:.2f} | "
                  f"{found[2]:,.0f} | {found[3]:.0f} | {memory_mb(gateway.pid)['VmHWM']:.0f} | "
                  f"{versus} | {meets} |")
    print("\nThe stub alone (direct), medians of the rounds:\n")
    print("| body | p50 ms, c=1 | p99 ms, c=1 | req/s, c=64 | p99 ms, c=64 |\n|---|---:|---:|---:|---:|")
    for body in BODIES:
        one, many = direct[(body, 1)], direct[(body, 64)]
        print(f"| {body} | {median_of(one, 'p50_ms'):.2f} | {median_of(one, 'p99_ms'):.2f} | "
              f"{median_of(many, 'rps'):,.0f} | {median_of(many, 'p99_ms'):.0f} |")


def timed_us(step: Callable[[], object], runs: int) -> float:
    """Median microseconds of ``step`` over ``runs`` calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def threaded_us(step: Callable[[], object], runs: int) -> float:
    """Median microseconds of ``await asyncio.to_thread(step)`` on an idle event loop."""
    async def measure() -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            await asyncio.to_thread(step)
            times.append((time.perf_counter() - started) * 1e6)
        return statistics.median(times)

    return asyncio.run(measure())


def audit_record(sealer: Sealer, message: RequestMessage, at: datetime) -> bytes:
    """What ``EgressGate.ship`` builds for one message before ``produce``."""
    record = AuditMessage(
        message_hash=message.message_hash, request_id="r", index=message.index, role=message.role,
        chars=len(message.text), sealed=sealer.seal(message.text, message.message_hash), at=at,
        team="bench", user="bench", repo=REPO, provider="openai", model="gpt-4o-mini",
        body_policy="hash", scan=True)
    return orjson.dumps(record.model_dump(mode="json"))


def print_breakdown(rng: random.Random) -> None:
    """Each step of the gate, timed in this process, per call (see the module docstring)."""
    scanner = SensitiveScanner(DEFAULT_SECRET_KINDS)
    egress = EgressSettings.model_validate({"mode": "enforce", "rules": RULES,
                                            "exceptions": EXCEPTIONS})
    policy = EgressPolicy(egress, {}, "hash")
    sealer = Sealer(base64.b64encode(os.urandom(32)).decode())
    system = source_reads(rng, 3000, scanner)
    turns = [source_reads(rng, rng.randrange(300, 4000), scanner) for _ in range(MAX_TURNS)]
    bodies = {"new 4 kB": [system, source_reads(rng, 4000, scanner)],
              "conversation, 40 turns": [system, *turns],
              "new 50 kB": [system, source_reads(rng, 50_000, scanner)]}
    at = datetime.now(UTC)
    print("| step, per call | " + " | ".join(bodies) + " |\n|---|" + "---:|" * len(bodies))
    rows: dict[str, list[str]] = {}
    for texts in bodies.values():
        payload = {"model": "gpt-4o-mini", "messages": [
            {"role": "system" if i == 0 else ("user", "assistant")[i % 2], "content": text}
            for i, text in enumerate(texts)]}
        raw = orjson.dumps(payload)
        last = request_messages("openai.chat", payload)[-1]
        steps: dict[str, Callable[[], object]] = {
            "parse the body (orjson.loads), for scale": partial(orjson.loads, raw),
            "`request_messages`: split, hash every message": partial(
                request_messages, "openai.chat", payload),
            "`message_hash` alone, every message": partial(
                lambda items: [message_hash(item) for item in items], payload["messages"]),
            "`EgressPolicy.judge` (5 rules)": partial(
                policy.judge, repo=REPO, team="bench", user="bench", provider="openai",
                model="gpt-4o-mini", today=date.today()),
            "`ship`, one new message: seal, `AuditMessage`, dump": partial(
                audit_record, sealer, last, at),
            "`Sealer.seal` alone, one new message": partial(
                sealer.seal, last.text, last.message_hash),
            "`SensitiveScanner.scan`, one new message": partial(scanner.scan, last.text),
        }
        for name, step in steps.items():
            rows.setdefault(name, []).append(f"{timed_us(step, 200):,.0f} µs")
        rows.setdefault("the same through `asyncio.to_thread`, as `_screen` runs it", []).append(
            f"{threaded_us(partial(scanner.scan, last.text), 200):,.0f} µs")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target and concurrency")
    args = parser.parse_args()
    if wrk_missing():
        return 2
    rng = random.Random(12)
    scripts = body_scripts(rng)
    with gateway_rig("egress-bench") as (workdir, broker, processes):
        stub_port = free_port()
        processes.start([sys.executable, str(REPO_ROOT / "bench" / "gateway_stub.py"),
                         "--port", str(stub_port)], workdir / "stub.log")
        stub = f"http://127.0.0.1:{stub_port}"
        wait_for_port("127.0.0.1", stub_port, 15)
        gateways = [start_gateway(config, index, workdir, processes, broker.bootstrap_servers, stub)
                    for index, config in enumerate(CONFIGS, 1)]
        for url in [stub, *(g.url for g in gateways)]:  # warm up connections and code paths
            drive(url, scripts["new 4 kB"], 4, 2, workdir)
        direct: dict[tuple[str, int], list[dict[str, float]]] = {}
        for body, script in scripts.items():
            for concurrency in (1, 64):
                # Rounds interleave direct and gateway runs, so a burst of other work on
                # this machine lands in one round, and the median of the rounds drops it.
                for _ in range(args.rounds):
                    ref = drive(stub, script, concurrency, args.duration, workdir)
                    direct.setdefault((body, concurrency), []).append(ref)
                    print(f"{body} c={concurrency} direct: {ref}", file=sys.stderr)
                    for gateway in gateways:
                        if body in gateway.config.bodies:
                            found = drive(gateway.url, script, concurrency, args.duration, workdir)
                            gateway.rounds.setdefault((body, concurrency), []).append({
                                "added_p50": found["p50_ms"] - ref["p50_ms"],
                                "added_p99": found["p99_ms"] - ref["p99_ms"],
                                "rps": found["rps"], "errors": found["errors"]})
                            print(f"{body} c={concurrency} {gateway.config.name}: {found}",
                                  file=sys.stderr)
        time.sleep(1.0)  # let the producers deliver what they hold
        print(f"Rounds: {args.rounds} of {args.duration} s per target and concurrency; added "
              "latency is each round's gateway run minus the direct run just before it, and the "
              "table gives the median of the rounds.\n")
        print_table(gateways, direct)
        errors = sum(r["errors"] for g in gateways for rs in g.rounds.values() for r in rs)
        print(f"\nCalls that failed (status ≥ 400, or cut by wrk at the end of a run): {errors:.0f}.")
        for gateway in gateways:
            counts = envelope_counts(gateway.url)
            sent = shipped(broker.bootstrap_servers, Topics(gateway.prefix).audit_messages)
            print(f"- {gateway.config.name}: {counts.get('delivered', 0):,.0f} calls (envelopes "
                  f"delivered), {sent:,} audit messages shipped; RSS {gateway.idle_rss_mb:.0f} MB "
                  f"after start, peak {memory_mb(gateway.pid)['VmHWM']:.0f} MB (budget 150 MB).")
        print("\nWhere the time goes: each step of the gate alone, in this process, median of 200:\n")
        print_breakdown(rng)
        return 0


if __name__ == "__main__":
    sys.exit(main())
