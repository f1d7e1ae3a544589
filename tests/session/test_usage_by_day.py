"""Usage per agent per day: summed from the entries, on the day each was appended."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import AccessDenied, DailyUsage, InvalidInput, Message, TokenUsage
from aisopod_shared import ManualClock


def _priced(tokens: int, cost: float) -> Message:
    return Message.assistant("priced", usage=TokenUsage(input=tokens - 1, output=1, cost=cost))


def test_usage_counts_each_entry_on_the_day_it_was_appended(store: Any, clock: ManualClock) -> None:
    start = clock.now()  # 2026-03-01 12:00 UTC
    main = store.get_or_create("agent:main:main")
    store.append(main.id, [Message.user("q"), _priced(100, 0.25)])
    clock.advance(days=1)
    store.append(main.id, [Message.user("q"), _priced(10, 0.5)])
    ops = store.get_or_create("agent:ops:main")
    store.append(ops.id, _priced(7, 0.0))
    clock.advance(hours=1)
    fork = store.fork(main.id)  # its copies of main's entries were spent once
    clock.advance(hours=1)
    store.append(fork.id, _priced(3, 0.125))
    day0, day1 = date(2026, 3, 1), date(2026, 3, 2)

    assert store.usage_by_day(since=start) == (
        DailyUsage("main", day0, 100, 0.25, 1),
        DailyUsage("main", day1, 13, 0.625, 2),
        DailyUsage("ops", day1, 7, 0.0, 1),
    )
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    assert store.usage_by_day(since=start, until=midnight) == (
        DailyUsage("main", day0, 100, 0.25, 1),
    )
    assert store.usage_by_day(since=midnight, agent_id="ops") == (
        DailyUsage("ops", day1, 7, 0.0, 1),
    )
    assert store.usage_by_day(since=clock.now() + timedelta(seconds=1)) == ()
    scoped = store.for_agent("ops")
    assert scoped.usage_by_day(since=start) == (DailyUsage("ops", day1, 7, 0.0, 1),)
    with pytest.raises(AccessDenied):
        scoped.usage_by_day(since=start, agent_id="main")
    store.delete(fork.id)
    assert store.usage_by_day(since=midnight, agent_id="main") == (
        DailyUsage("main", day1, 10, 0.5, 1),
    )


def test_usage_ranges_are_checked(store: Any, clock: ManualClock) -> None:
    now = clock.now()
    with pytest.raises(InvalidInput, match="since"):
        store.usage_by_day(since=datetime(2026, 1, 1))  # naive: ambiguous
    with pytest.raises(InvalidInput, match="since"):
        store.usage_by_day(since="2026-01-01")
    with pytest.raises(InvalidInput, match="until"):
        store.usage_by_day(since=now, until=now - timedelta(days=1))
    with pytest.raises(InvalidInput, match="366 days"):
        store.usage_by_day(since=now - timedelta(days=367))
    assert store.usage_by_day(since=now - timedelta(days=366)) == ()
