"""Envelope validation: bytes off the wire to an ``Envelope``, or a poison verdict.

The common case takes one pass of msgspec's decoder into the envelope's wire
struct (``wire.decode_envelope``, ~5x cheaper than pydantic's) and then checks
the version it read. A message msgspec refuses goes to pydantic's validator,
which is laxer (it takes ``"12"`` for an int): if pydantic accepts it, that
``Envelope`` goes on. Only a message both refuse goes through the slow path,
which parses it again step by step to name the reason: not JSON, not an
object, unknown major version (checked before the fields, since a future
major may rename them), or the first invalid field.
"""

from __future__ import annotations

import msgspec
import orjson
from pydantic import ValidationError

from meterline.schemas import Envelope, UnsupportedSchemaVersion, check_schema_version

from .errors import PoisonMessage
from .wire import decode_envelope


def parse_envelope(value: bytes | None) -> Envelope:
    """Parse and validate one envelope; ``PoisonMessage`` with the reason if it cannot be."""
    if value:
        try:
            envelope = decode_envelope(value)
        except msgspec.MsgspecError:
            try:
                envelope = Envelope.model_validate_json(value)
            except ValidationError:
                return _diagnose(value)  # names the reason
        version = envelope.schema_version
        if version not in _SUPPORTED:
            try:
                check_schema_version(version)
            except UnsupportedSchemaVersion as exc:
                raise PoisonMessage(str(exc)) from exc
            if len(_SUPPORTED) < 64:  # a handful in practice; bounded whatever arrives
                _SUPPORTED.add(version)
        return envelope
    return _diagnose(value)


#: Versions already checked and supported: most envelopes skip the check.
_SUPPORTED: set[str] = set()


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
