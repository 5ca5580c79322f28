"""The worker's msgspec decoder agrees with the pydantic Envelope it is derived from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from pydantic import BaseModel, Field, field_validator

from meterline.processors import PoisonMessage, parse_envelope
from meterline.processors.enrich import event_row
from meterline.processors.wire import decode_envelope, wire_struct
from meterline.schemas import Attempt, Envelope, PolicyBreach, Routing, Usage

from .test_enrich import envelope, tools


def plain(value: Any) -> Any:
    """A decoded envelope as nested builtins (datetimes kept), whichever decoder made it."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    return msgspec.to_builtins(value, builtin_types=(datetime,))


def full() -> Envelope:
    """An envelope with every optional part filled in."""
    return envelope(
        schema_version="1.4", stream=True, error_class="", user_agent="claude-cli/2.1",
        usage=Usage(input_tokens=12, output_tokens=34, cache_read_tokens=56,
                    cache_write_5m_tokens=7, cache_write_1h_tokens=8, reasoning_tokens=9,
                    source="provider", service_tier="priority"),
        breaches=[PolicyBreach(rule="no-secrets", kind="sensitive_data", detail="aws key",
                               excepted=True)],
        attempts=[Attempt(provider="anthropic", model="claude-sonnet-4-5", status=529,
                          error_class="overloaded_error", upstream_ms=12.5)],
        routing=Routing(rule="cheap-docs", from_provider="anthropic",
                        from_model="claude-opus-4-1"),
        body={"policy": "full", "request_sha256": "ab" * 32, "request": "{}",
              "request_messages": ["m1", "m2"]})


@pytest.mark.parametrize("original", [envelope(), full()], ids=["minimal", "full"])
def test_struct_and_model_decode_the_same_bytes_to_the_same_values(original: Envelope) -> None:
    value = original.model_dump_json().encode()
    decoded = decode_envelope(value)
    assert plain(decoded) == plain(Envelope.model_validate_json(value)) == plain(original)
    assert decoded.usage.total_tokens == original.usage.total_tokens  # properties carried


def test_defaults_are_the_models() -> None:
    required = {"request_id": "r1", "received_at": "2026-11-10T14:30:00Z",
                "done_at": "2026-11-10T14:30:01Z", "surface": "openai.chat",
                "provider": "openai", "requested_model": "m", "served_model": "m",
                "key_id": "k", "user": "u", "team": "t", "status": 200, "outcome": "ok"}
    value = orjson.dumps(required)
    assert plain(decode_envelope(value)) == plain(Envelope.model_validate_json(value))


def test_the_event_row_is_the_same_from_either_decoder() -> None:
    directory, book = tools()
    value = full().model_dump_json().encode()
    assert (event_row(decode_envelope(value), directory, book)
            == event_row(Envelope.model_validate_json(value), directory, book))


@pytest.mark.parametrize(("change", "where"), [
    ({"usage": {"input_tokens": -1}}, "input_tokens"),  # a bound
    ({"outcome": "fine"}, "outcome"),  # a literal
    ({"surprise": 1}, "surprise"),  # extra="forbid"
    ({"status": None}, "status"),  # a type
    ({"attempts": [{"provider": "p"}]}, "model"),  # a nested model's required field
])
def test_what_the_model_refuses_the_struct_refuses_and_the_reason_is_named(
        change: dict[str, Any], where: str) -> None:
    fields = orjson.loads(envelope().model_dump_json())
    for name, value in change.items():
        fields[name] = {**fields[name], **value} if isinstance(value, dict) else value
    value = orjson.dumps(fields)
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(value)
    with pytest.raises(PoisonMessage) as caught:
        parse_envelope(value)
    assert where in caught.value.reason


def test_input_only_pydantic_accepts_still_parses_as_the_model() -> None:
    fields = orjson.loads(envelope().model_dump_json())
    fields["status"] = "200"  # lax: pydantic coerces, msgspec does not
    value = orjson.dumps(fields)
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(value)
    parsed = parse_envelope(value)
    assert isinstance(parsed, Envelope) and parsed.status == 200


def test_a_model_with_a_validator_has_no_struct() -> None:
    class Checked(BaseModel):
        name: str = Field(min_length=1)

        @field_validator("name")
        @classmethod
        def _lower(cls, value: str) -> str:
            return value.lower()

    with pytest.raises(TypeError, match="custom validation"):
        wire_struct(Checked)


def test_datetimes_decode_as_aware_utc() -> None:
    decoded = decode_envelope(envelope().model_dump_json().encode())
    assert decoded.received_at == datetime(2026, 11, 10, 14, 30, tzinfo=UTC)


def test_a_model_with_an_alias_has_no_struct() -> None:
    class Aliased(BaseModel):
        name: str = Field(alias="Name")

    with pytest.raises(TypeError, match="alias"):
        wire_struct(Aliased)
