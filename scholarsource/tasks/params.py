"""What params a task takes, as a small JSON Schema, and the check a submit runs against it.

The pool describes each task's signature when it publishes the registry; API workers check
submits against that description without importing task code. Only what JSON can carry is
described: int, float, str, bool, list, dict, None, and optionals and unions of those
(`list[str]` checks the outer type). Any other annotation accepts anything. Bounds come
from `Annotated[float, Bounds(0, 86400)]`, so the signature stays the one source of truth
for both the API's check and the task's own reading of its params.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

_JSON_TYPES: dict[Any, str] = {int: "integer", float: "number", str: "string",
                               bool: "boolean", list: "array", tuple: "array",
                               dict: "object", type(None): "null"}


@dataclass(frozen=True)
class Bounds:
    """The range a numeric param must fall in, both ends included (None: open)."""

    minimum: float | None = None
    maximum: float | None = None


class InvalidParams(ValueError):
    """Raised when params do not fit the task's signature; `param` names the culprit."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def _types(annotation: Any) -> list[str] | None:
    """The JSON types an annotation admits, or None for 'anything'."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    if annotation is None:
        return ["null"]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _types(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        found: list[str] = []
        for member in typing.get_args(annotation):
            member_types = _types(member)
            if member_types is None:
                return None
            found += [t for t in member_types if t not in found]
        return found
    try:
        json_type = _JSON_TYPES.get(origin or annotation)
    except TypeError:  # an annotation that is not even a type, e.g. a list: anything goes
        return None
    return None if json_type is None else [json_type]


def _bounds(annotation: Any) -> Bounds | None:
    if typing.get_origin(annotation) is typing.Annotated:
        for extra in annotation.__metadata__:
            if isinstance(extra, Bounds):
                return extra
    return None


def describe(fn: Callable[..., Any]) -> Schema:
    """The params `fn(ctx, **params)` takes, as a JSON Schema object."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an annotation that does not resolve here: check names only
        hints = {}
    properties: Schema = {}
    required: list[str] = []
    takes_any = False
    for param in list(signature.parameters.values())[1:]:  # the first one is ctx
        if param.kind is param.VAR_KEYWORD:
            takes_any = True
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        annotation = hints.get(param.name, inspect.Parameter.empty)
        prop: Schema = {}
        json_types = _types(annotation)
        if json_types is not None:
            if param.default is None and "null" not in json_types:
                json_types.append("null")
            prop["type"] = json_types
        bounds = _bounds(annotation)
        if bounds is not None:
            prop.update({key: value for key, value in (("minimum", bounds.minimum),
                                                       ("maximum", bounds.maximum))
                         if value is not None})
        properties[param.name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": takes_any}


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    for kind, name in ((str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "null"


def _check_one(name: str, value: Any, prop: Schema) -> Any:
    allowed = prop.get("type")
    if allowed is not None:
        found = _type_of(value)
        if found == "number" and "integer" in allowed and value.is_integer():
            value, found = int(value), "integer"  # 5.0 is an integer to JSON (and JS)
        if found not in allowed and not (found == "integer" and "number" in allowed):
            raise InvalidParams(name, f"must be {' or '.join(allowed)}, not {found}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = prop.get("minimum", -math.inf), prop.get("maximum", math.inf)
        if not low <= value <= high:
            if high == math.inf:
                raise InvalidParams(name, f"must be at least {low:g}")
            if low == -math.inf:
                raise InvalidParams(name, f"must be at most {high:g}")
            raise InvalidParams(name, f"must be from {low:g} to {high:g}")
    return value


def check(params: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """`params` as the task will get them (5.0 becomes 5 where an int is expected), or
    InvalidParams. No schema (a registry published before schemas existed): accept."""
    if schema is None:
        return params
    properties: Schema = schema["properties"]
    for name in schema["required"]:
        if name not in params:
            raise InvalidParams(name, "required")
    checked = {}
    for name, value in params.items():
        prop = properties.get(name)
        if prop is None:
            if not schema["additionalProperties"]:
                known = ", ".join(properties) or "none"
                raise InvalidParams(name, f"unknown param (this task takes: {known})")
            checked[name] = value
        else:
            checked[name] = _check_one(name, value, prop)
    return checked
