"""The worker's fast envelope decoder: msgspec structs derived from the pydantic models.

``Envelope.model_validate_json`` costs ~20 µs an envelope, the largest part
of the worker's CPU per envelope; msgspec decodes and checks the same JSON
into a struct in ~3 µs. The pydantic models stay the one contract
(``schemas/``): ``wire_struct`` builds each struct from its model's fields
when this module is imported, so a field added to the model is on the wire
struct too, with no second list to keep in step.

What a struct keeps of its model: field names, types, defaults, the numeric
and length bounds (``ge``, ``le``, ``gt``, ``lt``, ``min_length``,
``max_length``), ``extra="forbid"`` (unknown fields are errors) and the
model's properties (``Usage.total_tokens``). Anything a struct could not
check the same way, a custom validator, a field alias or a type not listed in
``_plain``, makes ``wire_struct`` raise at import, never decode differently.

msgspec is strict where pydantic is lax (pydantic takes ``"12"`` for an int):
a message msgspec refuses is not poison yet. ``validate.parse_envelope`` then
asks pydantic, which either accepts it (and the worker carries on with the
pydantic ``Envelope``) or names the reason for the dead letter. So the
struct never accepts what the model refuses, and a struct and a model decoded
from the same bytes are equal field by field (tests/processors/test_wire.py).
"""

from __future__ import annotations

import types
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from meterline.schemas import Envelope

__all__ = ["decode_envelope", "wire_struct"]

#: Each bound's class, and the name of its value: its attribute, and msgspec.Meta's argument.
_BOUNDS = {annotated_types.Ge: "ge", annotated_types.Le: "le", annotated_types.Gt: "gt",
           annotated_types.Lt: "lt", annotated_types.MinLen: "min_length",
           annotated_types.MaxLen: "max_length"}
_SCALARS = (str, int, float, bool, datetime, type(None))


def wire_struct(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The msgspec struct that decodes what ``model`` validates, for the types ``_plain`` knows."""
    if any(getattr(model.__pydantic_decorators__, kind) for kind in (
            "validators", "field_validators", "root_validators", "model_validators",
            "field_serializers", "model_serializers", "computed_fields")):
        raise TypeError(f"{model.__name__} has custom validation a msgspec struct cannot repeat")
    fields: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        if info.alias is not None and info.alias != name:
            raise TypeError(f"{model.__name__}.{name}: an alias msgspec would not read")
        kind = _plain(info.annotation, model)
        bounds = {_BOUNDS[type(m)]: getattr(m, _BOUNDS[type(m)]) for m in info.metadata
                  if type(m) in _BOUNDS}
        if len(bounds) != len(info.metadata):
            raise TypeError(f"{model.__name__}.{name}: a constraint msgspec cannot check")
        if bounds:
            kind = Annotated[kind, msgspec.Meta(**bounds)]
        if info.default_factory is not None:
            factory = info.default_factory
            fields.append((name, kind, msgspec.field(default_factory=factory)))  # type: ignore[arg-type]
        elif info.default is PydanticUndefined:
            fields.append((name, kind, msgspec.NODEFAULT))
        elif isinstance(info.default, BaseModel):
            made = partial(msgspec.convert, info.default.model_dump(), _plain(type(info.default), model))
            fields.append((name, kind, msgspec.field(default_factory=made)))
        else:
            fields.append((name, kind, info.default))
    properties = {name: value for name, value in vars(model).items() if isinstance(value, property)}
    return msgspec.defstruct(f"Wire{model.__name__}", fields, namespace=properties,
                             frozen=bool(model.model_config.get("frozen")),
                             forbid_unknown_fields=model.model_config.get("extra") == "forbid",
                             kw_only=True)


_STRUCTS: dict[type[BaseModel], type[msgspec.Struct]] = {}


def _plain(annotation: Any, owner: type[BaseModel]) -> Any:
    """``annotation`` with each pydantic model in it replaced by its struct."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in _STRUCTS:
            _STRUCTS[annotation] = wire_struct(annotation)
        return _STRUCTS[annotation]
    if annotation in _SCALARS:
        return annotation
    origin = get_origin(annotation)
    if origin is Literal:
        return annotation
    if origin is list:
        (item,) = get_args(annotation)
        return list[_plain(item, owner)]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        return Union[tuple(_plain(arg, owner) for arg in get_args(annotation))]  # noqa: UP007
    raise TypeError(f"{owner.__name__}: no msgspec counterpart for {annotation!r}")


_DECODER = msgspec.json.Decoder(_plain(Envelope, Envelope))


def decode_envelope(value: bytes) -> Envelope:
    """The envelope in ``value`` as its wire struct; ``msgspec.ValidationError`` (or
    ``DecodeError``) when msgspec refuses it.

    Typed as the model it mirrors: the struct has the ``Envelope``'s fields and
    properties under the same names, and the code it is passed to only reads them.
    """
    envelope: Envelope = _DECODER.decode(value)
    return envelope
