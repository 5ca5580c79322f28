"""Cross-shape serving: a call in one API shape served by a provider of the other.

An OpenAI chat completions call can be served by an Anthropic model, and an
Anthropic messages call by an OpenAI-shaped one (docs/routing.md). Each route
knows from start whether its provider speaks the caller's shape
(``Route.cross_shape``, from ``crosses_shape``); a same-shape call never comes
here and costs what it did. A cross-shape call:

1. has its body translated (``request_body``, ``requests``) before anything is
   sent; a field the other shape cannot express is refused with
   ``Untranslatable`` (400), and the envelope records ``error_class``
   ``Untranslatable:<field>``;
2. is posted to the path of the provider's shape (``upstream_path``), without
   the client's query string (``?beta=true`` means nothing to the other API);
3. has its answer translated back (``serve``): whole bodies and errors by
   ``responses``, streams event by event by ``streams``;
4. has its usage read from the upstream's answer in the upstream's own shape
   (``upstream_surface``), so the cost is that of the model that served it.

Only chat completions and messages have counterparts. Responses, embeddings
and count_tokens calls routed to a provider of the other shape are refused.
"""

from __future__ import annotations

from typing import Any

import orjson

from meterline.schemas import ProviderKind, Surface

from ..errors import Untranslatable
from .requests import chat_to_messages, messages_to_chat

#: The API shape each provider kind speaks, True for Anthropic's; ``simulated`` speaks both.
_ANTHROPIC_SHAPED: dict[ProviderKind, bool] = {"anthropic": True, "openai": False,
                                               "azure": False, "openai_compatible": False}


def crosses_shape(kind: ProviderKind, anthropic_style: bool) -> bool:
    """Whether a provider of ``kind`` speaks the other shape than a call in this style."""
    shape = _ANTHROPIC_SHAPED.get(kind)
    return shape is not None and shape != anthropic_style


def upstream_path(anthropic_style: bool) -> str:
    """The path a call in this style is posted to on a provider of the other shape."""
    return "/v1/chat/completions" if anthropic_style else "/v1/messages"


def upstream_surface(anthropic_style: bool) -> Surface:
    """The surface whose answers the upstream of a cross-shape call sends."""
    return "openai.chat" if anthropic_style else "anthropic.messages"


def request_body(surface: Surface, payload: dict[str, Any], model: str,
                 kind: ProviderKind) -> bytes:
    """The body to post, in the other shape, for a ``surface`` call; raises ``Untranslatable``."""
    if surface == "openai.chat":
        return orjson.dumps(chat_to_messages(payload, model))
    if surface == "anthropic.messages":
        return orjson.dumps(messages_to_chat(payload, model, kind))
    raise Untranslatable(f"The model '{model}' is served by a provider of the other API shape, "
                         f"which has no counterpart for {surface} calls: ask for a model served "
                         "by a provider of your API's own shape.", field="model")
