"""Gateway memory through a store outage: nothing confirms, every envelope stays spooled.

Starts the embedded broker, a stub upstream and the real ``meterline gateway``
role, but no worker and no store: no sink confirmation ever arrives, so the
spool keeps every envelope (the outage case the spool exists for). ``wrk``
drives calls in steps; after each step the bench reads the gateway's RSS and
its spool figures from ``/metrics``. Printed: the gateway's RSS against the
envelopes held, its growth per 100k unconfirmed envelopes, and what that
projects for an hour at 1,000 calls/s (3.6M envelopes), set beside the
spool's disk cap (``gateway.spool_max_bytes``), which is reached first.

Run: ``python bench/spool_outage_bench.py [--steps 6 --step-seconds 20 --concurrency 8]``.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request

from gateway_bench import BODIES, gateway_rig, memory_mb, start_gateway, wrk, wrk_missing

HOUR_AT_1000 = 3_600_000


def spool_figures(gateway_url: str) -> dict[str, float]:
    """The spool's gauges from the gateway's /metrics (depth, bytes, cap, alarm)."""
    with urllib.request.urlopen(gateway_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("spool_depth", "spool_bytes", "spool_max_bytes", "spool_alarm"):
            if line.startswith(f"meterline_envelopes_{name} "):
                found[name] = float(line.split()[-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--step-seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if wrk_missing():
        return 2
    with gateway_rig("spool-outage-bench") as (workdir, broker, processes):
        gateway, url, _ = start_gateway(processes, broker, workdir, "outage")
        wrk(url + "/v1/chat/completions", BODIES["whole"], 2, 2, workdir)  # warm up
        start_rss = memory_mb(gateway.pid)["VmRSS"]
        start_depth = spool_figures(url).get("spool_depth", 0.0)
        print("| step | calls/s | envelopes held | spool MB | gateway RSS MB |")
        print("|---|---|---|---|---|")
        print(f"| start | | {start_depth:,.0f} | | {start_rss:.1f} |")
        figures: dict[str, float] = {}
        rss = start_rss
        after_first: tuple[float, float] | None = None  # (envelopes held, RSS) after step 1
        for step in range(1, args.steps + 1):
            result = wrk(url + "/v1/chat/completions", BODIES["whole"], args.concurrency,
                         args.step_seconds, workdir)
            figures = spool_figures(url)
            rss = memory_mb(gateway.pid)["VmRSS"]
            print(f"| {step} | {result['rps']:,.0f} | {figures.get('spool_depth', 0):,.0f} | "
                  f"{figures.get('spool_bytes', 0) / 2**20:,.1f} | {rss:.1f} |")
            if step == 1:
                after_first = (figures.get("spool_depth", 0.0), rss)
        held = figures.get("spool_depth", 0.0) - start_depth
        if held <= 0:
            print("no envelope was held: the bench measured nothing", file=sys.stderr)
            return 1
        per_100k = (rss - start_rss) / held * 100_000
        # The first step also pays one-off allocations (connections, caches, the first
        # segments): the slope after it is the cost of holding envelopes, and it projects.
        base_held, base_rss = start_depth, start_rss
        steady = per_100k
        if after_first is not None and figures["spool_depth"] > after_first[0] and args.steps > 1:
            base_held, base_rss = after_first
            steady = (rss - base_rss) / (figures["spool_depth"] - base_held) * 100_000
        bytes_per_envelope = figures["spool_bytes"] / max(figures["spool_depth"], 1)
        cap_envelopes = figures["spool_max_bytes"] / bytes_per_envelope
        held_in_hour = min(HOUR_AT_1000, cap_envelopes)
        projected = base_rss + steady * (held_in_hour - base_held) / 100_000
        print(f"\nGateway RSS grew {rss - start_rss:.1f} MB over {held:,.0f} unconfirmed envelopes: "
              f"{per_100k:.1f} MB per 100k, {steady:.1f} MB per 100k after the first step. "
              f"An envelope takes {bytes_per_envelope:,.0f} B of "
              f"spool, so the {figures['spool_max_bytes'] / 2**30:.1f} GiB cap holds "
              f"{cap_envelopes:,.0f}; an hour at 1,000 calls/s offers {HOUR_AT_1000:,}. "
              f"Projected RSS with {held_in_hour:,.0f} held: {projected:.0f} MB "
              f"(target ≤ 150 MB, ratio {projected / 150:.2f}).")
        if peak := memory_mb(gateway.pid).get("VmHWM"):
            print(f"Peak gateway RSS in this run: {peak:.1f} MB.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
