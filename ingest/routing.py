"""Routing: which provider serves a requested model, and how to address it.

A model named in ``settings.models`` goes where its alias says, under the
served name it gives. Any other model goes to the surface's default provider
(``openai`` for OpenAI-style paths, ``anthropic`` for Anthropic-style) under
its own name, unless ``gateway.allow_unlisted_models`` is off, in which case
it is refused as ``UnknownModel``.

An alias may list ordered ``targets`` (docs/routing.md). The call goes to the
first, or, when the targets carry weights, to one chosen by weight from a hash
of the request id (so one id always picks the same target); the others are its
fallbacks, in listed order, which ``fallback`` tries when it fails before any
byte reached the client. A route with fallbacks is a ``FallbackRoute``, which
carries its ``Alias``. An alias's routes are made once, at start: routing an
aliased call allocates nothing, and an unlisted model costs what it did.
A route whose provider speaks the other API shape than the call (an OpenAI
chat call to an Anthropic model) is ``cross_shape``: its calls are translated
(``translate``). A same-shape route never is.

The provider key is injected here, from settings that read it from the
environment, in the header that provider kind expects; whatever credential
the client sent is never forwarded.
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from meterline.schemas import ModelRoute, ModelTarget, ProviderSettings, Settings

from .errors import NotFound, UnknownModel
from .translate import crosses_shape

# Request headers never forwarded upstream: hop-by-hop, our own auth, and
# anything whose value we set ourselves.
_DROP_REQUEST_HEADERS = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
    "te", "trailer", "proxy-authorization", "proxy-connection", "authorization", "x-api-key",
    "api-key", "cookie", "accept-encoding", "expect",
})


#: A value the HTTP server let through but no header may carry upstream (response
#: splitting, header injection): CR, LF, NUL. Such a header is dropped, not repaired.
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")


def default_provider_name(anthropic_style: bool) -> str:
    return "anthropic" if anthropic_style else "openai"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one call goes: provider name and settings, and the model it is served as."""

    provider_name: str
    provider: ProviderSettings
    served_model: str
    anthropic_style: bool = False
    #: The provider speaks the other API shape than the call, which is translated
    #: (``translate``); set once, when the route is made, so a same-shape call pays one test.
    cross_shape: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cross_shape",
                           crosses_shape(self.provider.kind, self.anthropic_style))

    def url(self, path: str, query: bytes = b"") -> str:
        """The upstream URL for a gateway path such as ``/v1/chat/completions``.

        The client's query string is kept (Claude Code calls ``/v1/messages?beta=true``).
        """
        qs = query.decode("latin-1")
        if self.provider.kind == "azure":
            suffix = path.removeprefix("/v1")
            version = self.provider.api_version or "2024-10-21"
            extra = "&" + qs if qs else ""
            if suffix == "/models":
                return f"{self.provider.base_url}/openai/models?api-version={version}{extra}"
            return (f"{self.provider.base_url}/openai/deployments/{self.served_model}{suffix}"
                    f"?api-version={version}{extra}")
        return self.provider.base_url + path + ("?" + qs if qs else "")

    def headers(self, client_headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Client headers minus credentials and hop-by-hop ones, plus the provider key.

        Dropped: ``_DROP_REQUEST_HEADERS``, every header the client's ``Connection``
        names, ``x-meterline-*`` (ours), and any value holding CR, LF or NUL.

        Provider headers (``anthropic-version``, ``anthropic-beta``,
        ``openai-organization`` ...) and the User-Agent pass through as sent.
        """
        client = list(client_headers)
        # RFC 9110 7.6.1: headers the client named in Connection are hop-by-hop too
        hop = {token.strip().lower() for name, value in client if name == "connection"
               for token in value.split(",")}
        out = {name: value for name, value in client
               if name not in _DROP_REQUEST_HEADERS and name not in hop
               and not name.startswith("x-meterline-") and not _UNSAFE_VALUE.search(value)}
        out["accept-encoding"] = "identity"  # we read usage from the bytes we forward
        kind = self.provider.kind
        key = self.provider.api_key.get_secret_value() if self.provider.api_key else ""
        if key:
            if kind == "anthropic" or (self.anthropic_style and kind == "simulated"):
                out["x-api-key"] = key
            elif kind == "azure":
                out["api-key"] = key
            else:
                out["authorization"] = f"Bearer {key}"
        if kind == "anthropic" and "anthropic-version" not in out:
            out["anthropic-version"] = "2023-06-01"
        return out


@dataclass(frozen=True, slots=True)
class FallbackRoute(Route):
    """A route to one of an alias's several targets: the others are its fallbacks."""

    alias: Alias = field(kw_only=True)
    #: This route's place in the alias's targets.
    target: int = field(kw_only=True)


class Alias:
    """An alias's routes, one per target and API style, and which one a call tries first."""

    __slots__ = ("_bounds", "_routes")

    def __init__(self, name: str, route: ModelRoute, providers: dict[str, ProviderSettings]
                 ) -> None:
        targets = route.target_list()
        self._routes: dict[bool, tuple[Route, ...]] = {
            style: tuple(self._route(name, target, index, style, providers, len(targets) > 1)
                         for index, target in enumerate(targets))
            for style in (False, True)}
        #: Cumulative weights, when first attempts are drawn by weight.
        self._bounds = (tuple(accumulate(1 if t.weight is None else t.weight for t in targets))
                        if any(t.weight is not None for t in targets) else None)

    def _route(self, name: str, target: ModelTarget, index: int, anthropic_style: bool,
               providers: dict[str, ProviderSettings], several: bool) -> Route:
        provider, model = providers[target.provider], target.model or name
        if not several:
            return Route(target.provider, provider, model, anthropic_style)
        return FallbackRoute(target.provider, provider, model, anthropic_style, alias=self,
                             target=index)

    def first(self, anthropic_style: bool, request_id: str) -> Route:
        """The route a call tries first: the first target, or one drawn by weight from
        the request id's CRC-32 (the same id always draws the same target)."""
        routes, bounds = self._routes[anthropic_style], self._bounds
        if bounds is None:
            return routes[0]
        return routes[bisect_right(bounds, zlib.crc32(request_id.encode()) % bounds[-1])]

    def after(self, route: FallbackRoute) -> Iterator[Route]:
        """The fallbacks of ``route``: the alias's other targets, in listed order."""
        for index, other in enumerate(self._routes[route.anthropic_style]):
            if index != route.target:
                yield other


class Router:
    """Resolves (API style, requested model) to a ``Route``. Pure; no I/O."""

    def __init__(self, settings: Settings) -> None:
        self._providers = settings.providers
        self._aliases = {name: Alias(name, route, settings.providers)
                         for name, route in settings.models.items()}
        self._allow_unlisted = settings.gateway.allow_unlisted_models

    @property
    def aliases(self) -> list[str]:
        return list(self._aliases)

    def route(self, anthropic_style: bool, model: str, request_id: str = "") -> Route:
        """Where the call goes first; ``request_id`` draws it when the alias has weights."""
        alias = self._aliases.get(model)
        if alias is not None:
            return alias.first(anthropic_style, request_id)
        if not self._allow_unlisted:
            known = ", ".join(sorted(self._aliases)) or "none configured"
            raise UnknownModel(f"The model '{model}' does not exist or you do not have access "
                               f"to it through this gateway. Models available: {known}.",
                               param="model")
        return self.default(anthropic_style, model)

    def default(self, anthropic_style: bool, model: str = "") -> Route:
        """The surface's default provider, serving ``model`` under its own name."""
        name = default_provider_name(anthropic_style)
        provider = self._providers.get(name)
        if provider is None:
            raise NotFound(f"No '{name}' provider is configured on this gateway, so the model "
                           f"'{model}' cannot be routed.", param="model")
        return Route(name, provider, model, anthropic_style)
