"""Report errors.

    ReportError                 base
    ├── ReconciliationMismatch  a report's figures disagree with the events ledger:
    │                           the run fails, nothing is written or sent
    ├── DeliveryFailed          the report was written but could not be emailed
    │                           or posted; the files stay, the run is failed (a
    │                           budget alert: Slack refused it or stayed down through
    │                           every retry; its claim is released for the next check)
    ├── ProviderReportUnavailable  a provider's usage or cost report could not be
    │                           read (unreachable, refused the admin key, not JSON);
    │                           the reconcile run checks the other providers
    └── AlertConfigError        budget alerts cannot start: a webhook secret is
                                missing from the environment or is not a usable URL;
                                raised at start-up, listing every problem

Store errors reach reports as ``sinks.StoreUnavailable`` and are not wrapped:
the caller retries the whole run later, which is safe because runs are
idempotent.
"""

from __future__ import annotations


class ReportError(Exception):
    """Base of report errors."""


class ReconciliationMismatch(ReportError):
    """The rollup's total or request count differs from the events ledger."""


class DeliveryFailed(ReportError):
    """Email or Slack refused the report."""


class AlertConfigError(ReportError):
    """Budget alerts are misconfigured; ``problems`` holds one line per issue."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("budget alerts cannot start:\n  " + "\n  ".join(problems))


class ProviderReportUnavailable(ReportError):
    """A provider's usage or cost report could not be read."""
