"""TokenUsage: arithmetic, validation, and the transcript's usage shape."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given

from aisopod_shared import AisopodError, InvalidInput, TokenUsage, converter, structure
from tests.shared.strategies import usages


def test_defaults_are_zero_and_falsy() -> None:
    usage = TokenUsage()

    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (0, 0, 0, 0)
    assert usage.total == 0
    assert usage.cost == 0.0
    assert not usage


def test_usage_is_truthy_when_it_counts_tokens_or_money() -> None:
    assert TokenUsage(output=1)
    assert TokenUsage(cost=0.01)
    assert TokenUsage(total=3)


def test_total_defaults_to_the_sum_of_the_four_counts() -> None:
    assert TokenUsage(input=1, output=2, cache_read=3, cache_write=4).total == 10


def test_an_explicit_total_is_kept() -> None:
    assert TokenUsage(input=1, output=2, total=99).total == 99


def test_integer_costs_become_floats() -> None:
    cost = TokenUsage(cost=2).cost

    assert cost == 2.0
    assert isinstance(cost, float)


def test_plus_adds_every_field() -> None:
    a = TokenUsage(input=1, output=2, cache_read=3, cache_write=4, total=50, cost=0.25)
    b = TokenUsage(input=10, output=20, cache_read=30, cache_write=40, total=500, cost=0.5)

    assert a + b == TokenUsage(
        input=11, output=22, cache_read=33, cache_write=44, total=550, cost=0.75
    )


def test_usages_sum_from_an_empty_usage() -> None:
    parts = [TokenUsage(input=1, cost=0.5), TokenUsage(output=2, cost=0.25)]

    assert sum(parts, TokenUsage()) == TokenUsage(input=1, output=2, total=3, cost=0.75)


def test_plus_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = TokenUsage() + 1


@given(usages, usages)
def test_addition_is_fieldwise(a: TokenUsage, b: TokenUsage) -> None:
    """`a + b` adds each count, the totals and the costs."""
    total = a + b

    assert total.input == a.input + b.input
    assert total.output == a.output + b.output
    assert total.cache_read == a.cache_read + b.cache_read
    assert total.cache_write == a.cache_write + b.cache_write
    assert total.total == a.total + b.total
    assert total.cost == a.cost + b.cost
    assert b + a == total


@given(usages)
def test_a_trusted_usage_is_the_usage_it_was_read_from(usage: TokenUsage) -> None:
    """`trusted` (reads) fills every field, each in its place, and stays frozen."""
    read = TokenUsage.trusted(
        usage.input,
        usage.output,
        usage.cache_read,
        usage.cache_write,
        usage.total,
        int(usage.cost) if usage.cost.is_integer() else usage.cost,
    )

    assert read == usage
    assert hash(read) == hash(usage)
    assert type(read.cost) is float
    with pytest.raises(AttributeError):
        read.input = 1  # type: ignore[misc]


@pytest.mark.parametrize("field", ["input", "output", "cache_read", "cache_write", "total"])
@pytest.mark.parametrize("value", [-1, 1.0, 2.5, "3", None, True, [1]])
def test_negative_or_non_integer_counts_are_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        TokenUsage(**{field: value})
    assert info.value.field == "usage"
    assert isinstance(info.value, AisopodError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.1", None, True, [0.1]])
def test_non_finite_or_non_numeric_costs_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        TokenUsage(cost=value)
    assert info.value.field == "usage"


def test_an_integer_cost_too_large_for_a_float_is_refused_as_invalid_input() -> None:
    """10**400 cannot be a float cost; the refusal must be `InvalidInput`, not OverflowError."""
    with pytest.raises(InvalidInput):
        TokenUsage(cost=10**400)


# --- the transcript's shape ----------------------------------------------------


def test_unstructure_writes_the_transcript_shape() -> None:
    usage = TokenUsage(input=1, output=2, cache_read=3, cache_write=4, cost=0.125)

    assert converter.unstructure(usage) == {
        "input": 1,
        "output": 2,
        "cacheRead": 3,
        "cacheWrite": 4,
        "totalTokens": 10,
        "cost": {"total": 0.125},
    }


@given(usages)
def test_usage_round_trips_through_its_json_shape(usage: TokenUsage) -> None:
    assert structure(converter.unstructure(usage), TokenUsage) == usage


def test_structure_reads_a_full_transcript_usage() -> None:
    data = {
        "input": 100,
        "output": 20,
        "cacheRead": 5,
        "cacheWrite": 7,
        "totalTokens": 200,
        "cost": {"input": 0.1, "output": 0.2, "cacheRead": 0.01, "cacheWrite": 0.02, "total": 0.4},
    }

    assert structure(data, TokenUsage) == TokenUsage(
        input=100, output=20, cache_read=5, cache_write=7, total=200, cost=0.4
    )


def test_cost_without_a_total_is_the_sum_of_its_parts() -> None:
    data = {"input": 1, "cost": {"input": 0.5, "output": 0.25, "cacheRead": 0.125, "cacheWrite": 1}}

    assert structure(data, TokenUsage).cost == 1.875


def test_missing_total_tokens_is_the_sum_of_the_counts() -> None:
    data = {"input": 1, "output": 2, "cacheRead": 3, "cacheWrite": 4, "cost": {"total": 0}}

    usage = structure(data, TokenUsage)

    assert usage.total == 10
    assert usage.cost == 0.0


def test_total_may_be_spelled_total_and_cost_may_be_a_number() -> None:
    assert structure({"input": 1, "total": 5, "cost": 0.5}, TokenUsage) == TokenUsage(
        input=1, total=5, cost=0.5
    )


def test_missing_keys_default_to_zero() -> None:
    assert structure({}, TokenUsage) == TokenUsage()


def test_structure_passes_a_token_usage_through() -> None:
    usage = TokenUsage(input=4)

    assert structure(usage, TokenUsage) is usage


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        "100 tokens",
        None,
        {"input": -5},
        {"input": 1.5},
        {"totalTokens": "10"},
        {"cost": {"total": "0.1"}},
        {"cost": {"input": "0.1"}},
        {"cost": {"input": 0.1, "output": None}},
        {"cost": "free"},
    ],
)
def test_malformed_usage_is_refused(data: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        structure(data, TokenUsage)
    assert info.value.field == "usage"
