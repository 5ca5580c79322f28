"""Session fixtures: the real broker, the real ClickHouse engine, the simulated provider.

- ``broker``: one embedded tansu broker for the session (bootstrap string).
- ``topics``: a unique topic prefix per test, topics created on the broker.
- ``clickhouse``: a chdb client for this test process (one data path for the
  whole session, as chdb allows one per process) and a fresh database per
  test, built by the real migrations and dropped afterwards.
- ``simulator``: the simulated provider on a loopback port.
- ``pipeline``: store, processors and gateway as subprocesses, per test.
- ``kafka_broker``: one Apache Kafka 4.x broker for the session (``deploy/kafka/kafka-local``),
  skipped with the script's one line where Maven Central cannot be reached.
- ``backend``: the contract suite's broker, ``tansu`` or ``kafka`` (``tests/backends.py``);
  ``backend_pipeline`` is ``pipeline`` on it, ``own_backend`` a broker of the test's own
  that it may restart (tansu comes back empty, Kafka keeps its data).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meterline.embedded import EmbeddedBroker, create_topics, free_port
from meterline.schemas import ClickHouseSettings, Topics
from meterline.simulator import create_provider_app
from meterline.sinks import connect, migrate
from tests.backends import Backend, KafkaTierUnavailable, LocalKafka, OwnBackend, fetch_kafka
from tests.harness import Pipeline, ThreadedServer, unique_prefix


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    embedded = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    embedded.start()
    yield embedded.bootstrap_servers
    embedded.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, on a fixed port, so the test may stop and restart it
    (memory storage: it comes back empty)."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def topics(broker: str) -> Topics:
    names = Topics(unique_prefix())
    create_topics(broker, names.all(), partitions=2)
    return names


@pytest.fixture(scope="session")
def chdb_settings(tmp_path_factory: pytest.TempPathFactory) -> ClickHouseSettings:
    return ClickHouseSettings(dsn=f"chdb://{tmp_path_factory.mktemp('chdb')}")


@pytest.fixture(scope="session")
def _chdb_client(chdb_settings: ClickHouseSettings) -> Any:
    return connect(chdb_settings)


@pytest.fixture
def clickhouse(_chdb_client: Any, chdb_settings: ClickHouseSettings) -> Iterator[tuple[Any, str]]:
    """(client, database): a database of this test's own, migrated, dropped after."""
    database = "t_" + unique_prefix("db").replace("-", "_")
    migrate(_chdb_client, chdb_settings, database)
    yield _chdb_client, database
    _chdb_client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    server = ThreadedServer(create_provider_app()).start()
    yield server.url
    server.stop()


@pytest.fixture
def pipeline(tmp_path: Path, broker: str, simulator: str) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, broker, simulator).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kafka_jars() -> str:
    """The Kafka jars' cache folder; the Kafka tier is skipped, with the reason, where
    Maven Central cannot be reached."""
    try:
        return fetch_kafka()
    except KafkaTierUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def kafka_broker(kafka_jars: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    print(f"\nApache Kafka on {broker.bootstrap_servers}: started in {broker.started_in_s:.1f}s")
    yield broker
    broker.stop()


@pytest.fixture(params=["tansu", "kafka"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The session broker of either kind; a test asking for it runs once on each."""
    if request.param == "tansu":
        return Backend("tansu", request.getfixturevalue("broker"))
    kafka: LocalKafka = request.getfixturevalue("kafka_broker")
    return Backend("kafka", kafka.bootstrap_servers)


@pytest.fixture
def backend_pipeline(tmp_path: Path, backend: Backend, simulator: str) -> Iterator[Pipeline]:
    running = Pipeline(tmp_path, backend.bootstrap_servers, simulator,
                       embedded=backend.embedded).start()
    yield running
    running.stop()


@pytest.fixture(params=["tansu", "kafka"])
def own_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnBackend]:
    """A broker of this test's own, of either kind, on fixed ports: the test may stop and
    start it. tansu comes back empty; Kafka comes back with its log dir, so with its data."""
    broker: EmbeddedBroker | LocalKafka
    if request.param == "tansu":
        broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    else:
        request.getfixturevalue("kafka_jars")
        broker = LocalKafka(tmp_path / "kafka")
    broker.start()
    yield OwnBackend(request.param, broker.bootstrap_servers, broker)
    broker.stop()
