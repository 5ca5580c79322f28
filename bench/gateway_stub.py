"""The benchmark's stub upstream: canned OpenAI answers, as fast as uvicorn serves them.

Both the direct and the gateway runs hit this same process, so the difference
between them is what the gateway adds. It answers ``POST /v1/chat/completions``
with a fixed completion (with usage), or, when the body asks for a stream, a
fixed 20-chunk SSE stream ending in a usage chunk when ``include_usage`` is
set. Run: ``python bench/gateway_stub.py --port N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

_USAGE = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}
_BASE = {"id": "chatcmpl-bench", "created": 1767225600, "model": "gpt-4o-mini"}
WHOLE = orjson.dumps({**_BASE, "object": "chat.completion", "choices": [{
    "index": 0, "finish_reason": "stop",
    "message": {"role": "assistant", "content": "word " * 20}}], "usage": _USAGE})


def _chunks(with_usage: bool) -> list[bytes]:
    tail: dict[str, Any] = {"usage": None} if with_usage else {}
    base = {**_BASE, "object": "chat.completion.chunk"}
    out = [b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {
        "content": "word "}, "finish_reason": None}], **tail}) + b"\n\n" for _ in range(20)]
    if with_usage:
        out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": _USAGE}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


STREAMS = {True: _chunks(True), False: _chunks(False)}
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream":true' not in body.replace(b" ", b""):
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(WHOLE)).encode())]})
        await send({"type": "http.response.body", "body": WHOLE})
        return
    with_usage = b'"include_usage":true' in body.replace(b" ", b"")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for chunk in STREAMS[with_usage]:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
