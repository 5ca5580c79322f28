"""sinks: ClickHouse schema, the idempotent event writer, rollups, jobs and the read path.

Knows Kafka (it consumes the events topic) and ClickHouse; never HTTP upstreams.
"""

from .client import connect
from .consumer import EventSink
from .errors import MigrationFailed, SinkError, StoreUnavailable
from .jobs import (
    Job,
    JobArgumentError,
    JobError,
    JobRegistry,
    StoreNotRunning,
    UnknownJob,
    remote_job,
)
from .migrations import migrate, migration_files
from .query_server import QueryError, QueryServer, remote_query
from .reconcile import Reconciliation, reconcile
from .reprice import RepriceResult, reprice_range
from .rollups import ROLLUPS, repair_recent, repair_rollups
from .source import TopicSource, consumer_config
from .writer import EventWriter

__all__ = ["ROLLUPS", "EventSink", "EventWriter", "Job", "JobArgumentError", "JobError",
           "JobRegistry", "MigrationFailed", "QueryError", "QueryServer", "Reconciliation",
           "RepriceResult", "SinkError", "StoreNotRunning", "StoreUnavailable", "TopicSource",
           "UnknownJob",
           "connect", "consumer_config", "migrate", "migration_files", "reconcile",
           "remote_job", "remote_query", "repair_recent", "repair_rollups", "reprice_range"]
