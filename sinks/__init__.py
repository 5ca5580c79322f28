"""sinks: ClickHouse schema, the idempotent event writer, rollups, jobs and the read path.

Knows Kafka (it consumes the events topic) and ClickHouse; never HTTP upstreams.
"""

from meterline.kafka import TopicSource

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
from .query_server import LimitExceeded, QueryServer
from .reconcile import Reconciliation, reconcile
from .reprice import RepriceResult, reprice_range
from .rollups import ROLLUPS, repair_recent, repair_rollups
from .sql_guard import SqlRefused, checked_sql
from .store_access import StoreAccess
from .store_client import QueryError, StoreEndpoint, remote_query, store_endpoint
from .writer import EventWriter

__all__ = ["ROLLUPS", "EventSink", "EventWriter", "Job", "JobArgumentError", "JobError",
           "JobRegistry", "LimitExceeded", "MigrationFailed", "QueryError", "QueryServer",
           "Reconciliation", "RepriceResult", "SinkError", "SqlRefused", "StoreAccess",
           "StoreEndpoint", "StoreNotRunning", "StoreUnavailable", "TopicSource", "UnknownJob",
           "checked_sql", "connect", "migrate", "migration_files",
           "reconcile", "remote_job", "remote_query", "repair_recent", "repair_rollups",
           "reprice_range", "store_endpoint"]
