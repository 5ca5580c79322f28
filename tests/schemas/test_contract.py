"""The contract: ids, versions, and the JSON Schema files kept in the repo."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from meterline.schemas import (
    Envelope,
    UnsupportedSchemaVersion,
    check_schema_version,
    new_request_id,
    request_id_time,
)
from meterline.schemas.json_schema import JSON_DIR, MODELS, render


def test_request_ids_are_unique_time_ordered_uuid7() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(value[14] == "7" for value in ids)
    later = new_request_id(now_ms=int(time.time() * 1000) + 5000)
    assert later > max(ids)
    pinned = new_request_id(now_ms=1_790_000_000_123)
    assert request_id_time(pinned) == datetime.fromtimestamp(1_790_000_000.123, tz=UTC)


@pytest.mark.parametrize("version", ["1.0", "1.7"])
def test_known_major_versions_pass(version: str) -> None:
    check_schema_version(version)


@pytest.mark.parametrize("version", ["2.0", "0.9", "", "x.1"])
def test_unknown_major_versions_are_refused(version: str) -> None:
    with pytest.raises(UnsupportedSchemaVersion):
        check_schema_version(version)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_json_schema_matches_models(name: str) -> None:
    path = JSON_DIR / f"{name}.schema.json"
    assert path.read_text() == render(MODELS[name]), (
        f"{path} is stale: run `python -m meterline.schemas.json_schema`")


def test_envelope_never_has_a_field_for_key_text() -> None:
    fields = set(Envelope.model_fields)
    assert "key_id" in fields
    assert not fields & {"api_key", "key", "authorization", "x_api_key"}
