"""Request bodies as pydantic models: one definition validates a body and documents it.

A body is decoded strictly first (``ntm.serving.jsondoc``), then validated here with its model;
FastAPI never parses it, so the strict decoder's answers stand, and the OpenAPI document
declares the same model (``request_body``). A validation error becomes one ``BadRequest``
naming the field: "inputs[0].shape[1]: must be ...". A field's ``description`` is what the
message says it must be, so the document and the error say the same thing.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, RootModel, TypeAdapter, ValidationError

from ntm.serving.errors import BadRequest

# pydantic error types that say the value is missing or of the wrong kind or size: for a field
# with a description the message becomes "must be DESCRIPTION".
SHAPE_ERRORS = {"missing", "list_type", "dict_type", "model_type", "model_attributes_type",
                "too_short", "too_long", "string_type", "int_type", "bool_type"}
# The same errors worded for a value without a description.
WORDING = {"missing": "is required", "list_type": "must be a list",
           "dict_type": "must be a JSON object", "model_type": "must be a JSON object",
           "model_attributes_type": "must be a JSON object", "string_type": "must be a string",
           "int_type": "must be an integer", "bool_type": "must be true or false"}


def validate(model: type[BaseModel], doc: Any, what: str = "request") -> Any:
    """``doc`` (decoded JSON) validated as ``model``; BadRequest naming the first problem."""
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        raise BadRequest(problem(model, err.errors()[0], what)) from None


def problem(model: type[BaseModel], error: dict, what: str) -> str:
    """One pydantic error as "field: what is wrong"."""
    loc, kind_of_error = error["loc"], error["type"]
    where = field_path(loc, what)
    field = field_at(model, loc)
    if kind_of_error == "extra_forbidden":
        parent = field_at(model, loc[:-1])
        allowed = ", ".join(fields_of(parent.annotation if parent else model))
        return f"{where}: unknown field; allowed: {allowed}"
    if kind_of_error == "missing":
        got = ""
    elif kind_of_error in ("too_short", "too_long"):
        got = f", got {error['ctx']['actual_length']} items"
    else:
        got = f", got {kind(error.get('input'))}"
    if field is not None and field.description and kind_of_error in SHAPE_ERRORS:
        return f"{where}: must be {field.description}{got}"
    if kind_of_error in WORDING:
        return f"{where}: {WORDING[kind_of_error]}{got}"
    message = error["msg"]
    return f"{where}: {message[:1].lower()}{message[1:]}"


def field_path(loc: tuple, what: str = "request") -> str:
    """("inputs", 0, "shape") -> "inputs[0].shape"; ``what`` names the whole body (``()``)
    and starts a path into a body that is a list ("instances[0]")."""
    out = what if not loc or isinstance(loc[0], int) else ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def field_at(model: type, loc: tuple):
    """The pydantic FieldInfo that ``loc`` ends at (a RootModel's root for ``()``), or None."""
    field, annotation = None, model
    if isinstance(model, type) and issubclass(model, RootModel):
        field = model.model_fields["root"]
        annotation = field.annotation
    for part in loc:
        annotation = unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            if not args:
                return None
            annotation, field = args[0], None
            continue
        fields = fields_of(annotation)
        if part not in fields:
            return None
        field = fields[part]
        annotation = field.annotation
    return field


def fields_of(annotation: Any) -> dict:
    annotation = unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields
    return {}


def unwrap(annotation: Any) -> Any:
    """``X | None`` -> X; anything else as it is."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def kind(value: Any) -> str:
    """The JSON kind of a decoded value, for messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def json_schema(model: Any) -> dict:
    """The JSON schema of a model (or any type), with its definitions inlined: an OpenAPI
    operation cannot carry ``$defs`` of its own."""
    schema = TypeAdapter(model).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def request_body(model: Any, media_types: tuple[str, ...] = ("application/json",)) -> dict:
    """``openapi_extra`` declaring ``model`` as the operation's required request body."""
    schema = json_schema(model)
    return {"requestBody": {"required": True,
                            "content": {m: {"schema": schema} for m in media_types}}}
