"""Time to first byte of streamed chat completions, one request at a time.

A separate process (so it does not share an event loop with what it measures):
``python bench/gateway_ttfb.py URL KEY N`` prints one JSON line with the p50
and p99 time from sending the request to reading the first body chunk, in
microseconds, over N sequential requests on one kept-alive connection.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson

BODY = orjson.dumps({"model": "gpt-4o-mini", "stream": True,
                     "messages": [{"role": "user", "content": "Say twenty words."}]})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def measure(url: str, key: str, count: int) -> dict[str, float]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    samples: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for index in range(count + 50):  # the first 50 warm up and are dropped
            started = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.content.readany()
                first = time.perf_counter()
                await response.read()
            if index >= 50:
                samples.append((first - started) * 1e6)
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}


if __name__ == "__main__":
    result = asyncio.run(measure(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    print(orjson.dumps(result).decode())
