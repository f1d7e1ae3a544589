"""Clocks and the microsecond timestamps stores keep."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisopod_shared import Clock, ManualClock, SystemClock, from_micros, to_micros
from tests.shared.strategies import aware_datetimes

START = datetime(2030, 3, 30, 23, 59, 59, 999_999, tzinfo=UTC)


def test_system_clock_tells_the_current_utc_time() -> None:
    clock: Clock = SystemClock()

    before = datetime.now(UTC)
    now = clock.now()
    after = datetime.now(UTC)

    assert now.tzinfo is UTC
    assert before <= now <= after
    assert repr(clock) == "SystemClock()"


def test_manual_clock_starts_where_told() -> None:
    clock: Clock = ManualClock(START)

    assert clock.now() == START
    assert clock.now() == START


def test_manual_clock_has_a_fixed_default_start() -> None:
    assert ManualClock().now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_manual_clock_converts_other_zones_to_utc() -> None:
    clock = ManualClock(datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")))

    assert clock.now() == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_advance_moves_forward_by_a_delta_or_keywords_and_returns_the_new_time() -> None:
    clock = ManualClock(START)

    assert clock.advance(timedelta(microseconds=1)) == datetime(2030, 3, 31, tzinfo=UTC)
    assert clock.advance(hours=1, minutes=30) == datetime(2030, 3, 31, 1, 30, tzinfo=UTC)
    assert clock.advance(days=1.5) == datetime(2030, 4, 1, 13, 30, tzinfo=UTC)
    assert clock.now() == datetime(2030, 4, 1, 13, 30, tzinfo=UTC)


def test_advance_across_a_daylight_saving_change_counts_real_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = ManualClock(datetime(2026, 3, 29, 1, 30, tzinfo=berlin))  # 30 min before the jump

    clock.advance(hours=1)

    assert clock.now().astimezone(berlin) == datetime(2026, 3, 29, 3, 30, tzinfo=berlin)


def test_set_jumps_to_any_aware_time() -> None:
    clock = ManualClock(START)
    earlier = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))

    clock.set(earlier)

    assert clock.now() == earlier
    assert clock.now().tzinfo is UTC
    assert "2001-02-03T09:05:06+00:00" in repr(clock)


def test_manual_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 1))
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 1, 1))
    assert clock.now() == START


def test_manual_clock_can_be_advanced_from_many_threads() -> None:
    clock = ManualClock(START)

    def tick() -> None:
        for _ in range(1000):
            clock.advance(microseconds=1)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock.now() == START + timedelta(microseconds=4000)


# --- microseconds --------------------------------------------------------------


def test_to_micros_counts_from_the_unix_epoch() -> None:
    assert to_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    assert to_micros(datetime(2026, 1, 1, tzinfo=UTC)) == 1_767_225_600_000_000


def test_to_micros_depends_on_the_instant_not_the_zone() -> None:
    utc = datetime(2026, 7, 1, 12, tzinfo=UTC)
    plus_two = datetime(2026, 7, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    berlin = datetime(2026, 7, 1, 14, tzinfo=ZoneInfo("Europe/Berlin"))

    assert to_micros(utc) == to_micros(plus_two) == to_micros(berlin)


def test_from_micros_gives_aware_utc_datetimes() -> None:
    when = from_micros(1_767_225_600_000_001)

    assert when == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert when.tzinfo is UTC
    assert from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_to_micros_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2026, 1, 1))


@given(aware_datetimes)
def test_aware_datetimes_round_trip_through_micros(when: datetime) -> None:
    back = from_micros(to_micros(when))

    assert back == when
    assert back.tzinfo is UTC


@given(
    st.integers(
        min_value=to_micros(datetime(1, 1, 2, tzinfo=UTC)),
        max_value=to_micros(datetime(9999, 12, 31, tzinfo=UTC)),
    )
)
def test_micros_round_trip_through_datetimes(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros


@given(aware_datetimes, aware_datetimes)
def test_micros_keep_the_order_of_instants(a: datetime, b: datetime) -> None:
    assert (to_micros(a) < to_micros(b)) == (a < b)
