"""Envelope validation: bytes off the wire to an ``Envelope``, or a poison verdict.

The common case takes one pass of pydantic's Rust JSON validator
(``model_validate_json``) and then checks the version it read. Only a message
that fails goes through the slow path, which parses it again step by step to
name the reason: not JSON, not an object, unknown major version (checked
before the fields, since a future major may rename them), or the first
invalid field.
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from meterline.schemas import Envelope, UnsupportedSchemaVersion, check_schema_version

from .errors import PoisonMessage


def parse_envelope(value: bytes | None) -> Envelope:
    """Parse and validate one envelope; ``PoisonMessage`` with the reason if it cannot be."""
    if value:
        try:
            envelope = Envelope.model_validate_json(value)
        except ValidationError:
            pass  # fall through to the slow path, which names the reason
        else:
            try:
                check_schema_version(envelope.schema_version)
            except UnsupportedSchemaVersion as exc:
                raise PoisonMessage(str(exc)) from exc
            return envelope
    return _diagnose(value)


def _diagnose(value: bytes | None) -> Envelope:
    if not value:
        raise PoisonMessage("empty message value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PoisonMessage("not a JSON object")
    try:
        check_schema_version(str(raw.get("schema_version", "")))
        return Envelope.model_validate(raw)
    except UnsupportedSchemaVersion as exc:
        raise PoisonMessage(str(exc)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PoisonMessage(f"invalid envelope: {where}: {first['msg']} "
                            f"({exc.error_count()} errors)") from exc
