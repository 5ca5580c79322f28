"""reports: scheduled jobs (budget alerts, chargeback) reading ClickHouse through sinks."""

from .alerts import AlertOutcome, BudgetAlerts
from .alerts_message import AlertMessage
from .budget_period import BudgetPeriod
from .chargeback import ChargebackRun, register_chargeback, run_chargeback
from .chargeback_period import Month
from .errors import AlertConfigError, DeliveryFailed, ReconciliationMismatch, ReportError
from .scheduler import create_scheduler, register_alert_job, register_jobs

__all__ = ["AlertConfigError", "AlertMessage", "AlertOutcome", "BudgetAlerts", "BudgetPeriod",
           "ChargebackRun", "DeliveryFailed", "Month", "ReconciliationMismatch", "ReportError",
           "create_scheduler", "register_alert_job", "register_chargeback", "register_jobs",
           "run_chargeback"]
