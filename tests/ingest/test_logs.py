"""Structured logs: JSON lines with context, never a key or a body."""

from __future__ import annotations

import logging

import orjson

from meterline.ingest.logs import JsonFormatter


def test_json_line_with_extras_and_secrets_masked() -> None:
    record = logging.LogRecord("meterline.ingest.proxy", logging.WARNING, __file__, 1,
                               "refused key ml-abcdefghijklmnop upstream sk-ant-api03-xyzxyzxyz",
                               None, None)
    record.request_id = "0190-abc"
    record.body = '{"messages": "secret prompt"}'
    record.headers = {"authorization": "Bearer ml-abcdefghijklmnop"}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["request_id"] == "0190-abc"
    assert "ml-abcdefghijklmnop" not in line["msg"] and "xyzxyzxyz" not in line["msg"]
    assert "body" not in line and "headers" not in line
