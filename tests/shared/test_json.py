"""The JSON helpers: strict `dumps`/`loads`, `structure`, and `register_camel_case`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from cattrs.errors import BaseValidationError
from hypothesis import given

from aisopod_shared import AisopodError, InvalidInput, Message, converter, dumps, loads, structure
from aisopod_shared._json import register_camel_case, to_camel
from tests.shared.strategies import INT64_MIN, UINT64_MAX, json_values

# --- dumps / loads -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1.5,
        "text with \u00e9, \u4e2d and \U0001f600",
        [],
        {},
        {"a": [1, 2.25, None, {"b": "null"}], "c": False},
        INT64_MIN,
        UINT64_MAX,
    ],
)
def test_valid_data_round_trips(value: Any) -> None:
    data = dumps(value)

    assert isinstance(data, bytes)
    assert loads(data) == value


def test_tuples_are_written_as_lists() -> None:
    assert loads(dumps({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


def test_loads_accepts_str_bytes_bytearray_and_memoryview() -> None:
    text = '{"k": [1, "v"]}'
    expected = {"k": [1, "v"]}

    assert loads(text) == expected
    assert loads(text.encode()) == expected
    assert loads(bytearray(text.encode())) == expected
    assert loads(memoryview(text.encode())) == expected


@given(json_values)
def test_any_json_value_without_non_finite_floats_round_trips(value: Any) -> None:
    assert loads(dumps(value)) == value


def test_nulls_alongside_finite_floats_are_fine() -> None:
    value = {"a": None, "b": [1.5, None], "c": "NaN"}

    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1.0, math.nan],
        {"a": {"b": [None, {"c": math.inf}]}},
        ({"x": -math.inf},),
        {"usage": {"cost": math.nan}, "other": None},
    ],
)
def test_dumps_refuses_nan_and_infinity_even_nested(value: Any) -> None:
    with pytest.raises(InvalidInput, match="NaN and infinity") as info:
        dumps(value, field="details")
    assert info.value.field == "details"
    assert isinstance(info.value, AisopodError)


@pytest.mark.parametrize("value", ["\ud800", {"k": "ok \udfff"}, {"\ud83d": 1}, ["a", ["\udc00b"]]])
def test_dumps_refuses_lone_surrogates(value: Any) -> None:
    with pytest.raises(InvalidInput, match="surrogate") as info:
        dumps(value, field="text")
    assert info.value.field == "text"


@pytest.mark.parametrize("value", [UINT64_MAX + 1, INT64_MIN - 1, [10**30], {"n": -(10**30)}])
def test_dumps_refuses_integers_beyond_64_bits(value: Any) -> None:
    with pytest.raises(InvalidInput, match="64-bit") as info:
        dumps(value, field="count")
    assert info.value.field == "count"


@pytest.mark.parametrize("value", [{1, 2}, object(), {1: "non-string key"}, b"bytes"])
def test_dumps_refuses_non_json_types(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        dumps(value)
    assert info.value.field == "payload"


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "{'a': 1}",
        '{"a": 1,}',
        "[1] [2]",
        "NaN",
        "[NaN]",
        '{"x": Infinity}',
        "-Infinity",
        "1e400",
        b'"\xff"',
    ],
)
def test_loads_refuses_invalid_json_and_nan_literals(data: str | bytes) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON") as info:
        loads(data, field="line 3")
    assert info.value.field == "line 3"
    assert isinstance(info.value, ValueError)


def test_loads_names_the_default_field() -> None:
    with pytest.raises(InvalidInput) as info:
        loads("nope")
    assert info.value.field == "payload"
    assert str(info.value).startswith("payload: ")


# --- structure ---------------------------------------------------------------


@attrs.frozen
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"x": 1}, Point),
        ({"x": "one", "y": 2}, Point),
        ("not a point", Point),
    ],
)
def test_structure_wraps_converter_failures_as_invalid_input(data: Any, cls: type[Any]) -> None:
    with pytest.raises(InvalidInput, match=f"not a valid {cls.__name__}") as info:
        structure(data, cls)
    assert isinstance(info.value.__cause__, BaseValidationError | TypeError | ValueError | KeyError)


@pytest.mark.parametrize("data", ["seven", None, 7.0, True])
def test_structure_refuses_a_scalar_of_the_wrong_type_instead_of_coercing_it(data: Any) -> None:
    with pytest.raises(InvalidInput, match="expected int"):
        structure(data, int)


def test_structure_wraps_a_nested_validation_failure() -> None:
    with pytest.raises(InvalidInput, match="not a valid Message") as info:
        structure({"role": "user", "content": [{"type": "toolCall", "id": "c"}]}, Message)
    assert isinstance(info.value.__cause__, BaseValidationError)


def test_structure_lets_invalid_input_through_unchanged() -> None:
    with pytest.raises(InvalidInput) as info:
        structure([1], Message)
    assert info.value.reason == "expected a JSON object, got list"
    assert info.value.__cause__ is None


def test_structure_returns_the_value_when_data_is_valid() -> None:
    assert structure({"x": 1, "y": 2}, Point) == Point(1, 2)
    assert structure("12", str) == "12"


# --- register_camel_case -----------------------------------------------------


def _freeze_extra(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class Widget:
    widget_id: str
    display_name: str = ""
    is_shiny: bool = False
    raw_size: int = 0
    nick_name: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze_extra)


@attrs.frozen
class Gadget:
    gadget_kind: str
    size_in_mm: int = 0


register_camel_case(Widget, tag=("type", "widget"))
register_camel_case(Gadget, rename={"size_in_mm": "sizeMM"})


def test_to_camel_spells_snake_case_in_camel_case() -> None:
    assert to_camel("tool_call_id") == "toolCallId"
    assert to_camel("role") == "role"
    assert to_camel("cache_read") == "cacheRead"


def test_registered_class_is_written_in_camel_case_with_its_tag() -> None:
    assert converter.unstructure(Widget("w1", display_name="Knob", nick_name="k")) == {
        "type": "widget",
        "widgetId": "w1",
        "displayName": "Knob",
        "isShiny": False,
        "rawSize": 0,
        "nickName": "k",
    }


def test_registered_class_leaves_out_only_fields_at_a_none_default() -> None:
    """`None` defaults are left out; other defaults (`""`, `False`, `0`) are written."""
    data = converter.unstructure(Widget("w2"))

    assert data == {
        "type": "widget",
        "widgetId": "w2",
        "displayName": "",
        "isShiny": False,
        "rawSize": 0,
    }
    assert structure(data, Widget) == Widget("w2")


def test_registered_class_collects_unknown_keys_in_extra_and_writes_them_back() -> None:
    data = {"type": "widget", "widgetId": "w3", "colour": "red", "tags": ["a"]}

    widget = structure(data, Widget)

    assert widget == Widget("w3", extra={"colour": "red", "tags": ["a"]})
    assert converter.unstructure(widget) == {
        **data,
        "displayName": "",
        "isShiny": False,
        "rawSize": 0,
    }


def test_rename_overrides_the_camel_case_spelling() -> None:
    gadget = Gadget("lever", size_in_mm=12)

    assert converter.unstructure(gadget) == {"gadgetKind": "lever", "sizeMM": 12}
    assert structure({"gadgetKind": "lever", "sizeMM": 12}, Gadget) == gadget


def test_registered_class_refuses_a_non_object() -> None:
    with pytest.raises(InvalidInput, match="expected a JSON object, got list"):
        structure(["widgetId", "w"], Widget)
