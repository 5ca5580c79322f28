"""Delivery: finance gets the report by email, leads their summaries, Slack the totals.

The SMTP server (aiosmtpd) and the Slack webhook are real servers on loopback.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from meterline.embedded import free_port
from meterline.reports import DeliveryFailed, run_chargeback
from meterline.reports.chargeback_ledger import RunLedger
from meterline.reports.chargeback_period import Month
from meterline.simulator.organisation import Organisation
from tests.reports.chargeback_data import JOSE, MONTH, MONTH_START, ZURICH, call, settings_for
from tests.traffic import load_events

pytestmark = pytest.mark.store


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def slack() -> Iterator[tuple[list[dict[str, Any]], str]]:
    received: list[dict[str, Any]] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/x"
    server.shutdown()
    server.server_close()


def test_email_and_slack_carry_the_reconciled_report(clickhouse: tuple[Any, str], tmp_path: Path,
                                                     inbox: tuple[Inbox, int],
                                                     slack: tuple[list[dict[str, Any]], str]) -> None:
    client, database = clickhouse
    handler, port = inbox
    posts, webhook = slack
    settings = settings_for(Organisation.demo(seed=3), reports={
        "smtp_host": "127.0.0.1", "smtp_port": port, "email_from": "meterline@example.com",
        "email_to": ["finance@example.com"], "email_leads": True})
    settings.reports.slack_webhook = SecretStr(webhook)
    load_events(client, database, settings, [call(MONTH_START), call(MONTH_START)])
    run = run_chargeback(client, database, settings, Month.parse(MONTH), output_dir=tmp_path)

    finance = [m for to, m in handler.messages if to == ["finance@example.com"]]
    assert len(finance) == 1
    attachments = {part.get_filename(): part.get_content() for part in finance[0].iter_attachments()}
    assert set(attachments) == {run.html.name, run.csv.name}
    assert ZURICH in attachments[run.html.name] and JOSE in attachments[run.html.name]
    assert JOSE in attachments[run.csv.name]
    assert str(MONTH) in finance[0]["Subject"]
    lead_mail = [m for to, m in handler.messages if to == ["josé@example.com"]]
    assert len(lead_mail) == 1
    body = lead_mail[0].get_body(("plain",))
    assert body is not None and ZURICH in body.get_content()

    (post,) = posts
    assert ZURICH in post["text"] and "reconciled" in post["text"]


def test_a_refused_delivery_keeps_the_files_and_records_the_failure(
        clickhouse: tuple[Any, str], tmp_path: Path) -> None:
    client, database = clickhouse
    settings = settings_for(Organisation.demo(seed=3), reports={
        "smtp_host": "127.0.0.1", "smtp_port": free_port(), "email_to": ["finance@example.com"]})
    load_events(client, database, settings, [call(MONTH_START)])
    with pytest.raises(DeliveryFailed, match=r"email via 127\.0\.0\.1"):
        run_chargeback(client, database, settings, Month.parse(MONTH), output_dir=tmp_path)
    assert (tmp_path / "chargeback" / MONTH / f"chargeback-{MONTH}.csv").exists()
    (record,) = RunLedger(client, database).runs("chargeback", MONTH)
    assert record.status == "failed" and "DeliveryFailed" in record.error
