"""The answer to a cross-shape call: the upstream's, whole or streamed, in the caller's shape.

``serve`` stands in for the proxy's own answer when the serving target speaks
the other API shape (``Route.cross_shape``). A stream is relayed through a
translator (``streams``) in place of the usage filter; a whole body is read,
translated (``responses``) and sent with its new length. Either way the usage
on the envelope is read from the upstream's answer in its own shape, and the
served model is the one the upstream names, so the call is priced as served.

Errors the provider returns keep their status and are rendered in the
caller's error format. An answer the caller's shape cannot carry becomes a
502 ``UntranslatableAnswer`` that keeps the usage the provider billed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson

from meterline.schemas import Outcome, Usage

from ..call import CallRecord
from ..errors import UntranslatableAnswer
from ..relay import Receive, Send, read_whole, relay
from ..usage import FREE, StreamUsageTracker, usage_from_body
from . import upstream_surface
from .responses import completion_to_message, error_body, message_to_completion
from .streams import ChunksToMessages, MessagesToChunks

if TYPE_CHECKING:
    from ..routing import Route

Headers = list[tuple[bytes, bytes]]


class Finish(Protocol):
    """``Proxy.finish``: emits the call's envelope."""

    def __call__(self, call: CallRecord, *, status: int, outcome: Outcome, usage: Usage,
                 error_class: str = "", served_model: str = "") -> None: ...


async def serve(call: CallRecord, route: Route, upstream: aiohttp.ClientResponse,
                receive: Receive, send: Send, *, include_usage: bool,
                headers: Callable[[int | None], Headers], finish: Finish) -> None:
    """Answer ``call`` from ``upstream``, translated; ``finish`` it once it has ended.

    ``include_usage``: an OpenAI client asked for its stream's usage chunk.
    ``headers``: the response headers to send, given the body length (None: streamed).
    """
    surface = upstream_surface(route.anthropic_style)
    if call.stream and upstream.content_type == "text/event-stream":
        tracker = StreamUsageTracker(surface)
        translator = (ChunksToMessages(tracker) if route.anthropic_style
                      else MessagesToChunks(tracker, include_usage))
        end = await relay(call, upstream, headers(None), receive, send, tracker, translator)
        finish(call, status=upstream.status, outcome=end.outcome,
               usage=tracker.result(call.payload), error_class=end.error_class,
               served_model=tracker.model)
        return
    raw = await read_whole(call, upstream, route.provider_name)  # the provider's answer
    status = upstream.status
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    usage, error_class = FREE, f"http_{status}"
    served: Any = ""
    if status >= 400:  # the provider refused or failed the call and bills nothing for it
        data = error_body(route.anthropic_style, status, parsed, raw)
    else:
        usage = usage_from_body(surface, parsed, call.payload)
        served = parsed.get("model") if isinstance(parsed, dict) else ""
        try:
            data, error_class = _translated(route, parsed), ""
        except UntranslatableAnswer as exc:
            exc.request_id = call.request_id
            status, error_class = exc.status, exc.error_class
            data = exc.render("anthropic" if route.anthropic_style else "openai")
    await send({"type": "http.response.start", "status": status, "headers": headers(len(data))})
    await send({"type": "http.response.body", "body": data})
    finish(call, status=status, outcome="ok" if status < 400 else "upstream_error", usage=usage,
           error_class=error_class, served_model=served if isinstance(served, str) else "")


def _translated(route: Route, answer: Any) -> bytes:
    """A successful whole answer in the caller's shape."""
    if not isinstance(answer, dict):
        raise UntranslatableAnswer(f"The upstream provider '{route.provider_name}' answered "
                                   "with a body that is not a JSON object.")
    if route.anthropic_style:
        return orjson.dumps(completion_to_message(answer, route.provider_name))
    return orjson.dumps(message_to_completion(answer))
