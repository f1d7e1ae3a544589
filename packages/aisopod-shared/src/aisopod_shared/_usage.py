"""Token usage and cost, as counted by model providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from aisopod_shared._errors import InvalidInput
from aisopod_shared._json import JSONObject, converter

__all__ = ["TokenUsage"]


def _count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"a token count must be an integer, got {value!r}", field="usage")
    if value < 0:
        raise InvalidInput(f"a token count cannot be negative, got {value}", field="usage")
    return value


def _cost(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"a cost must be a number, got {value!r}", field="usage")
    try:
        cost = float(value)
    except OverflowError as err:
        raise InvalidInput("a cost must be finite", field="usage") from err
    if cost != cost or cost in (float("inf"), float("-inf")):
        raise InvalidInput("a cost must be finite", field="usage")
    return cost


def _default_total(usage: TokenUsage) -> int:
    return usage.input + usage.output + usage.cache_read + usage.cache_write


@attrs.frozen
class TokenUsage:
    """Tokens and money spent on a model call; usages add up with `+`.

    `total` defaults to the sum of the four counts, as providers report it when
    they leave it out. `cost` is the total cost in the provider's currency.
    """

    input: int = attrs.field(default=0, converter=_count)
    output: int = attrs.field(default=0, converter=_count)
    cache_read: int = attrs.field(default=0, converter=_count)
    cache_write: int = attrs.field(default=0, converter=_count)
    total: int = attrs.field(
        default=attrs.Factory(_default_total, takes_self=True), converter=_count
    )
    cost: float = attrs.field(default=0.0, converter=_cost)

    @classmethod
    def trusted(
        cls, input: int, output: int, cache_read: int, cache_write: int, total: int, cost: float
    ) -> TokenUsage:
        """A usage from values already checked (read back from storage): no validation.

        Reads build one per entry; skipping the converters, and attrs' frozen
        `__setattr__` with them, makes them cheap (a third of the time).
        """
        usage = _new(cls)
        _set_input(usage, input)
        _set_output(usage, output)
        _set_cache_read(usage, cache_read)
        _set_cache_write(usage, cache_write)
        _set_total(usage, total)
        _set_cost(usage, float(cost))
        return usage

    def __add__(self, other: object) -> TokenUsage:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return TokenUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            total=self.total + other.total,
            cost=self.cost + other.cost,
        )

    def __bool__(self) -> bool:
        return bool(self.total or self.cost)


def _usage_to_json(usage: TokenUsage) -> JSONObject:
    # The transcript format's spelling: camelCase counts, `totalTokens`, and
    # the cost as an object whose `total` is what we keep.
    return {
        "input": usage.input,
        "output": usage.output,
        "cacheRead": usage.cache_read,
        "cacheWrite": usage.cache_write,
        "totalTokens": usage.total,
        "cost": {"total": usage.cost},
    }


def _usage_from_json(data: Any, _: Any) -> TokenUsage:
    if isinstance(data, TokenUsage):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput("usage must be a JSON object", field="usage")
    cost = data.get("cost", 0.0)
    if isinstance(cost, Mapping):
        total_cost = cost.get("total")
        if total_cost is None:
            parts = [cost.get(k, 0.0) for k in ("input", "output", "cacheRead", "cacheWrite")]
            total_cost = sum(_cost(part) for part in parts)
        cost = total_cost
    counts = {
        "input": data.get("input", 0),
        "output": data.get("output", 0),
        "cache_read": data.get("cacheRead", 0),
        "cache_write": data.get("cacheWrite", 0),
    }
    total = data.get("totalTokens", data.get("total"))
    if total is None:
        return TokenUsage(**counts, cost=cost)
    return TokenUsage(**counts, total=total, cost=cost)


converter.register_unstructure_hook(TokenUsage, _usage_to_json)
converter.register_structure_hook(TokenUsage, _usage_from_json)


# The slots' own setters: what `trusted` fills a new usage with, past the frozen
# class's `__setattr__` (which refuses every assignment).
_new = object.__new__
_set_input = TokenUsage.__dict__["input"].__set__
_set_output = TokenUsage.__dict__["output"].__set__
_set_cache_read = TokenUsage.__dict__["cache_read"].__set__
_set_cache_write = TokenUsage.__dict__["cache_write"].__set__
_set_total = TokenUsage.__dict__["total"].__set__
_set_cost = TokenUsage.__dict__["cost"].__set__
