"""JSON: the one cattrs converter, on orjson, and strict dump/load helpers.

Every aisopod value that becomes JSON goes through `converter`; stored JSON is
plain data (never pickles or module paths). `dumps` refuses what JSON cannot
carry faithfully: NaN and infinities (orjson would silently write `null`),
strings that are not valid UTF-8, integers beyond 64 bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import orjson
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

from aisopod_shared._errors import InvalidInput

__all__ = [
    "JSONObject",
    "converter",
    "dumps",
    "loads",
    "register_camel_case",
    "structure",
    "to_camel",
]

JSONObject = dict[str, Any]
"""A decoded JSON object; values are JSON values (dict, list, str, int, float, bool, None)."""

converter = make_converter()
"""The converter between aisopod values and JSON-ready data: configured here, used everywhere."""


def _strict_scalar(kind: type[Any], accepts: tuple[type[Any], ...]) -> None:
    # cattrs' defaults coerce (`str(5)`, `bool("false")`); data from other
    # tools must be refused instead of silently changed.
    def structure_scalar(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise InvalidInput(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepts):
            raise InvalidInput(f"expected {kind.__name__}, got {type(value).__name__}")
        return float(value) if kind is float else value

    converter.register_structure_hook(kind, structure_scalar)


_strict_scalar(str, (str,))
_strict_scalar(int, (int,))
_strict_scalar(float, (int, float))
_strict_scalar(bool, (bool,))

T = TypeVar("T")


def to_camel(name: str) -> str:
    """`tool_call_id` -> `toolCallId`: the transcript format's spelling of our field names."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def register_camel_case(
    cls: type[Any],
    *,
    rename: Mapping[str, str] | None = None,
    tag: tuple[str, str] | None = None,
) -> None:
    """Teach `converter` the JSON shape of an attrs class.

    Fields are spelled in camelCase (or as `rename` says), fields left at a
    `None` default are left out, and a field named `extra` collects the keys the class
    does not know, so that data from other tools survives a round trip.
    `tag=("type", "text")` adds and expects a discriminator key.
    """
    fields = [f for f in attrs.fields(cls) if f.name != "extra"]
    has_extra = any(f.name == "extra" for f in attrs.fields(cls))
    names = {f.name: (rename or {}).get(f.name, to_camel(f.name)) for f in fields}
    defaults_none = {f.name for f in fields if f.default is None}
    overrides = {
        name: override(rename=json_name, omit_if_default=name in defaults_none)
        for name, json_name in names.items()
    }
    if has_extra:
        overrides["extra"] = override(omit=True)
    base_unstructure = make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
    base_structure = make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
    known = set(names.values())
    if tag is not None:
        known.add(tag[0])

    def unstructure(value: Any) -> JSONObject:
        data: JSONObject = {tag[0]: tag[1]} if tag is not None else {}
        data.update(base_unstructure(value))
        if has_extra and value.extra:
            for key, item in value.extra.items():
                data.setdefault(key, item)
        return data

    def structure_fn(data: Any, _: Any) -> Any:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"expected a JSON object, got {type(data).__name__}")
        value = base_structure(data, cls)
        if has_extra:
            extra = {key: item for key, item in data.items() if key not in known}
            if extra:
                value = attrs.evolve(value, extra=extra)
        return value

    converter.register_unstructure_hook(cls, unstructure)
    converter.register_structure_hook(cls, structure_fn)


def structure(data: Any, cls: type[T]) -> T:
    """`converter.structure`, with failures reported as `InvalidInput`."""
    try:
        return converter.structure(data, cls)
    except InvalidInput:
        raise
    except (BaseValidationError, TypeError, ValueError, KeyError, AttributeError) as err:
        raise InvalidInput(f"not a valid {cls.__name__}: {_describe(err)}") from err


def _describe(err: BaseException) -> str:
    if isinstance(err, BaseValidationError) and err.exceptions:
        return _describe(err.exceptions[0])
    if isinstance(err, InvalidInput):
        return err.reason
    return str(err) or type(err).__name__


def dumps(value: Any, *, field: str = "payload") -> bytes:
    """Serialize JSON-ready data with orjson, refusing what JSON cannot carry.

    Raises:
        InvalidInput: for NaN or an infinity, a string that is not valid UTF-8
            (a lone surrogate), an integer beyond 64 bits, or a non-JSON type.
    """
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as err:
        raise InvalidInput(str(err), field=field) from err
    # orjson writes NaN and infinities as `null`; where no `null` was written
    # there can be none, so the walk below only runs for payloads with nulls.
    if b"null" in data and _has_non_finite(value):
        raise InvalidInput("NaN and infinity are not JSON", field=field)
    return data


def _has_non_finite(value: Any) -> bool:
    # A loop over a stack, not recursion through generators: it walks every payload
    # holding a null (a framework's message often has several), once per append.
    waiting = [value]
    while waiting:
        item = waiting.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            waiting.extend(item.values())
        elif isinstance(item, list | tuple):
            waiting.extend(item)
    return False


def loads(data: bytes | bytearray | memoryview | str, *, field: str = "payload") -> Any:
    """Parse JSON with orjson (which refuses NaN, invalid UTF-8 and trailing data).

    Raises:
        InvalidInput: when `data` is not valid JSON.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"not valid JSON: {err}", field=field) from err
