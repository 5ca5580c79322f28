"""An in-process gateway on real parts, for the gateway's own tests.

``GatewayUnderTest`` serves ``create_app`` with uvicorn on loopback, produces
envelopes with the real emitter to the session's embedded broker (a unique
topic prefix per instance), and forwards to a simulated provider that insists
on its own provider key. ``EnvelopeReader`` reads the envelopes topic back
from the beginning by partition assignment (no consumer group, so no join
wait) and finds envelopes by the request id the gateway returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition
from starlette.applications import Starlette

from meterline.embedded import create_topics
from meterline.ingest import create_app, hash_key
from meterline.ingest.auth import key_id_for
from meterline.schemas import Envelope, KeySettings, Settings, Topics
from meterline.simulator import create_provider_app
from tests.harness import ThreadedServer, unique_prefix

PROVIDER_KEY = "sk-upstream-secret-0123456789"
ALICE_KEY = "ml-alice-test-key-0123456789abcdef"
BOB_KEY = "ml-bob-test-key-0123456789abcdef"
REQUEST_ID = "x-meterline-request-id"


def key_record(key: str, user: str, team: str, repo: str = "") -> KeySettings:
    digest = hash_key(key)
    return KeySettings(id=key_id_for(digest), sha256=digest, user=user, team=team, repo=repo)


@dataclass(frozen=True)
class KeyedUpstream:
    """The simulated provider's URL and app (its ``state.last_headers`` shows what arrived)."""

    url: str
    app: Starlette

    @property
    def last_headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.app.state.last_headers
        return headers


def running_keyed_upstream() -> Iterator[KeyedUpstream]:
    """A simulated provider that refuses any key but ``PROVIDER_KEY``, while the generator runs."""
    app = create_provider_app(api_key=PROVIDER_KEY)
    server = ThreadedServer(app).start()
    yield KeyedUpstream(server.url, app)
    server.stop()


class EnvelopeReader:
    """Envelopes from one topic, indexed by request id as they are read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_prefix("r"),
                                   "enable.auto.commit": False})
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        self.seen: dict[str, Envelope] = {}

    def _drain(self, timeout_s: float) -> None:
        for message in self._consumer.consume(500, timeout_s):
            value = message.value()
            if message.error() is None and value:
                envelope = Envelope.model_validate(orjson.loads(value))
                self.seen[envelope.request_id] = envelope

    def get(self, request_id: str, timeout_s: float = 15.0) -> Envelope:
        deadline = time.monotonic() + timeout_s
        while request_id not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no envelope for request {request_id} in {timeout_s}s")
            self._drain(0.2)
        return self.seen[request_id]

    def count(self, settle_s: float = 1.0) -> int:
        self._drain(settle_s)
        return len(self.seen)

    def close(self) -> None:
        self._consumer.close()


class GatewayUnderTest:
    """The gateway app served on loopback, with its envelope topic readable."""

    def __init__(self, workdir: Path, bootstrap: str, upstream_url: str,
                 egress: dict[str, Any] | None = None, **gateway: Any) -> None:
        self.prefix = unique_prefix("gw")
        create_topics(bootstrap, Topics(self.prefix).all(), partitions=2)
        provider = {"api_key": PROVIDER_KEY, "base_url": upstream_url}
        self.settings = Settings(
            kafka={"embedded": True, "bootstrap_servers": bootstrap, "topic_prefix": self.prefix},
            gateway={"spool_dir": str(workdir / self.prefix / "spool"), "log_format": "text",
                     **gateway},
            providers={"openai": {"kind": "openai", **provider},
                       "anthropic": {"kind": "anthropic", **provider},
                       "local": {"kind": "openai_compatible", **provider}},
            models={"fast": {"provider": "anthropic", "model": "claude-haiku-4-5"},
                    "local-llama": {"provider": "local", "model": "llama-3.3-70b-instruct"}},
            keys=[key_record(ALICE_KEY, "alice", "platform", repo="acme/api"),
                  key_record(BOB_KEY, "bob", "payments")],
            egress=egress or {},
        )
        self.app = create_app(self.settings)
        self.server = ThreadedServer(self.app).start()
        self.envelopes = EnvelopeReader(bootstrap, Topics(self.prefix).envelopes)

    @property
    def url(self) -> str:
        return self.server.url

    def metric(self, name: str, *labels: str) -> float:
        """The sum of the ``name`` samples on /metrics whose labels include all ``labels``."""
        text = httpx.get(self.url + "/metrics").text
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and all(label in series for label in labels):
                total += float(value)
        return total

    def stop(self) -> None:
        self.envelopes.close()
        self.server.stop()
