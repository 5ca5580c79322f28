"""Fixtures for the gateway's tests: a key-checking simulated provider and a gateway.

Both are module-scoped: a gateway starts in well under a second, but one per
module keeps the envelope topic small and the suite quick.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ingest.gateway_harness import GatewayUnderTest, KeyedUpstream, running_keyed_upstream


@pytest.fixture(scope="module")
def keyed_simulator() -> Iterator[KeyedUpstream]:
    """A simulated provider that refuses any key but ``PROVIDER_KEY``."""
    yield from running_keyed_upstream()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, broker: str,
            keyed_simulator: KeyedUpstream) -> Iterator[GatewayUnderTest]:
    running = GatewayUnderTest(tmp_path_factory.mktemp("gateway"), broker, keyed_simulator.url,
                               upstream_timeout_s=1.0)
    yield running
    running.stop()
