"""Sending a written chargeback: email over SMTP, and a summary to a Slack webhook.

Both are optional and configured in ``reports``: email when ``smtp_host`` and
``email_to`` are set, Slack when the webhook named by ``slack_webhook_env``
is in the environment. Delivery runs only after the files are written and
reconciled, so a report that failed its reconciliation is never sent.
Failures raise ``DeliveryFailed``; the files stay on disk and the run is
recorded as failed, so the next run resends.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from slack_sdk.webhook import WebhookClient

from meterline.schemas import ReportSettings

from .chargeback_model import Chargeback
from .chargeback_render import money
from .errors import DeliveryFailed


def _message(settings: ReportSettings, to: list[str], subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.email_from or f"meterline@{settings.smtp_host}"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(text)
    return message


def _send(settings: ReportSettings, messages: list[EmailMessage], timeout_s: float) -> None:
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            for message in messages:
                smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"email via {settings.smtp_host}:{settings.smtp_port}: {exc}") from exc


def email_report(settings: ReportSettings, chargeback: Chargeback, html: Path, csv: Path,
                 leads: dict[str, Path], *, timeout_s: float = 30.0) -> int:
    """Mail finance the report (HTML attached, CSV attached) and, if asked, each lead theirs.

    Returns how many messages were sent; 0 when email is not configured.
    """
    if not (settings.smtp_host and settings.email_to):
        return 0
    subject = f"AI tooling chargeback {chargeback.month}: {money(chargeback.cost_usd)}"
    report = _message(settings, settings.email_to, subject,
                      f"The AI tooling chargeback for {chargeback.month.label()} is attached: "
                      f"{money(chargeback.cost_usd)} over {chargeback.requests:,} requests, "
                      "reconciled against the events ledger.\n")
    page = html.read_text(encoding="utf-8")
    report.add_alternative(page, subtype="html")
    report.add_attachment(page, subtype="html", filename=html.name)
    # The CSV goes as its exact bytes (BOM included), declared UTF-8.
    report.add_attachment(csv.read_bytes(), maintype="text", subtype="csv", filename=csv.name,
                          params={"charset": "utf-8"})
    messages = [report]
    if settings.email_leads:
        messages += [_message(settings, [lead], f"Your team's AI tooling spend, "
                              f"{chargeback.month.label()}", path.read_text(encoding="utf-8"))
                     for lead, path in sorted(leads.items()) if "@" in lead]
    _send(settings, messages, timeout_s)
    return len(messages)


def post_to_slack(settings: ReportSettings, chargeback: Chargeback, html: Path, *,
                  timeout_s: float = 30.0) -> bool:
    """Post the month's total and per-team lines to the webhook; False when not configured."""
    if settings.slack_webhook is None:
        return False
    lines = [f"*AI tooling chargeback {chargeback.month.label()}*: "
             f"{money(chargeback.cost_usd)} over {chargeback.requests:,} requests (reconciled)"]
    lines += [f"• {team.name} ({team.cost_centre or 'no cost centre'}): {money(team.cost_usd)}"
              for team in chargeback.all_teams if team.cost_usd or team.requests]
    lines.append(f"Report: `{html.name}`")
    client = WebhookClient(settings.slack_webhook.get_secret_value(), timeout=int(timeout_s))
    try:
        response = client.send(text="\n".join(lines))
    except OSError as exc:
        raise DeliveryFailed(f"slack webhook: {exc}") from exc
    if response.status_code != 200:
        raise DeliveryFailed(f"slack webhook answered {response.status_code}: {response.body}")
    return True
