"""The path of an inbound message: route, find or create, reset when stale or asked."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

from aisopod_session import Inbound, SessionConfig, open_store
from aisopod_session.keys import cron_key
from aisopod_shared import ManualClock, Message
from tests.session.workers import race_resolve

DM = Inbound(channel="telegram", peer_id="123", text="hi")


def _say(store: Any, inbound: Inbound, config: SessionConfig) -> Any:
    """Resolve an inbound message and append it, as a gateway does."""
    resolution = store.resolve(inbound, config)
    store.append(resolution.session.id, Message.user(resolution.text or "(empty)"))
    return resolution


def test_first_message_creates_the_session_with_its_origin(store: Any) -> None:
    config = SessionConfig.from_dict({"dmScope": "per-channel-peer"})
    first = store.resolve(Inbound(channel="Telegram", peer_id="123", account_id="bot1"), config)
    assert first.reason == "new"
    assert first.is_new
    assert first.key == "agent:main:telegram:direct:123"
    assert first.session.origin.channel == "telegram"
    assert first.session.origin.peer == "123"
    assert first.session.origin.account == "bot1"
    again = store.resolve(Inbound(channel="telegram", peer_id="123"), config)
    assert again.reason is None
    assert again.session.id == first.session.id


def test_daily_reset_at_four_in_a_non_utc_zone(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict({"timezone": "Asia/Tokyo"})  # 04:00 JST is 19:00 UTC
    clock.set(datetime(2026, 3, 1, 18, 30, tzinfo=UTC))
    first = _say(store, DM, config)
    clock.set(datetime(2026, 3, 1, 18, 59, tzinfo=UTC))
    assert _say(store, DM, config).session.id == first.session.id
    clock.set(datetime(2026, 3, 1, 19, 1, tzinfo=UTC))
    after = _say(store, DM, config)
    assert after.reason == "daily"
    assert after.previous is not None
    assert after.previous.id == first.session.id
    assert after.previous.status == "archived"
    clock.set(datetime(2026, 3, 2, 18, 0, tzinfo=UTC))  # before the next boundary
    assert _say(store, DM, config).session.id == after.session.id


def test_daily_boundary_follows_daylight_saving(store: Any, clock: ManualClock) -> None:
    """In New York, 04:00 is 09:00 UTC in winter and 08:00 UTC once clocks go forward
    (2026-03-08): a fixed offset would miss the boundary by an hour."""
    config = SessionConfig.from_dict({"timezone": "America/New_York"})
    clock.set(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    first = _say(store, DM, config)
    clock.set(datetime(2026, 3, 8, 7, 59, tzinfo=UTC))  # 03:59 EDT
    assert _say(store, DM, config).session.id == first.session.id
    clock.set(datetime(2026, 3, 8, 8, 1, tzinfo=UTC))  # 04:01 EDT
    assert _say(store, DM, config).reason == "daily"
    # And back: on 2026-11-01 04:00 EST is 09:00 UTC.
    clock.set(datetime(2026, 11, 1, 8, 30, tzinfo=UTC))
    autumn = _say(store, DM, config)
    clock.set(datetime(2026, 11, 1, 8, 59, tzinfo=UTC))  # 03:59 EST
    assert _say(store, DM, config).session.id == autumn.session.id
    clock.set(datetime(2026, 11, 1, 9, 1, tzinfo=UTC))
    assert _say(store, DM, config).reason == "daily"


def test_idle_window(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict({"reset": {"mode": "idle", "idleMinutes": 30}})
    first = _say(store, DM, config)
    for _ in range(5):  # activity every 20 minutes keeps it alive, across days
        clock.advance(minutes=20)
        assert _say(store, DM, config).session.id == first.session.id
    clock.advance(hours=20)
    assert _say(store, DM, config).session.id != first.session.id
    clock.advance(minutes=31)
    assert _say(store, DM, config).reason == "idle"


def test_metadata_writes_are_not_activity(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict({"reset": {"mode": "idle", "idleMinutes": 30}})
    first = _say(store, DM, config)
    clock.advance(minutes=25)
    store.patch(first.session.id, title="still here?")
    clock.advance(minutes=10)
    assert _say(store, DM, config).reason == "idle"


def test_daily_and_idle_together_whichever_expires_first(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict(
        {"timezone": "UTC", "reset": {"mode": "daily", "atHour": 4, "idleMinutes": 60}}
    )
    clock.set(datetime(2026, 3, 1, 3, 30, tzinfo=UTC))
    first = _say(store, DM, config)
    clock.set(datetime(2026, 3, 1, 4, 10, tzinfo=UTC))  # idle only 40 min, but past 04:00
    daily = _say(store, DM, config)
    assert daily.reason == "daily"
    clock.set(datetime(2026, 3, 1, 5, 20, tzinfo=UTC))  # same day, 70 minutes idle
    idle = _say(store, DM, config)
    assert idle.reason == "idle"
    assert len({first.session.id, daily.session.id, idle.session.id}) == 3


def test_per_type_and_per_channel_overrides(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict(
        {
            "timezone": "UTC",
            "resetByType": {"group": {"mode": "idle", "idleMinutes": 10}},
            "resetByChannel": {"discord": {"mode": "idle", "idleMinutes": 120}},
        }
    )
    clock.set(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    group = Inbound(channel="slack", chat_type="group", peer_id="g1")
    discord_group = Inbound(channel="discord", chat_type="group", peer_id="g2")
    thread = Inbound(channel="slack", chat_type="channel", peer_id="c1", thread_id="t1")
    first = {
        n: _say(store, i, config).session.id
        for n, i in enumerate((group, discord_group, DM, thread))
    }
    clock.advance(minutes=30)
    assert _say(store, group, config).reason == "idle"  # group override: 10 minutes
    assert _say(store, discord_group, config).session.id == first[1]  # channel beats type
    assert _say(store, DM, config).session.id == first[2]  # base daily, same day
    assert _say(store, thread, config).session.id == first[3]  # threads are not groups


def test_a_reset_trigger_starts_a_new_session_and_passes_the_rest_on(store: Any) -> None:
    config = SessionConfig()
    first = _say(store, DM, config)
    reset = store.resolve(
        Inbound(channel="telegram", peer_id="123", text="/new plan a trip"), config
    )
    assert reset.reason == "trigger"
    assert reset.trigger == "/new"
    assert reset.text == "plan a trip"
    assert reset.previous is not None
    assert reset.previous.id == first.session.id
    bare = store.resolve(Inbound(channel="telegram", peer_id="123", text="/reset"), config)
    assert bare.reason == "trigger"
    assert bare.text == ""
    plain = store.resolve(Inbound(channel="telegram", peer_id="123", text="/newest news"), config)
    assert plain.reason is None
    assert plain.text == "/newest news"


def test_each_cron_run_gets_a_fresh_session(store: Any, clock: ManualClock) -> None:
    config = SessionConfig.from_dict({"reset": {"mode": "idle", "idleMinutes": 1}})
    run1 = _say(store, Inbound(key=cron_key("main", "digest", "r1")), config)
    clock.advance(hours=3)  # a long run is never idle-reset
    assert _say(store, Inbound(key=cron_key("main", "digest", "r1")), config).reason is None
    run2 = _say(store, Inbound(key=cron_key("main", "digest", "r2")), config)
    assert run2.reason == "new"
    assert run2.session.id != run1.session.id
    assert run2.key == "agent:main:cron:digest:run:r2"


def test_resolving_one_stale_key_at_once_leaves_one_current_session(
    shared_database_url: str,
) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 3, 0, tzinfo=UTC))
    store = open_store(shared_database_url, clock=clock)
    stale = store.resolve(DM, SessionConfig.from_dict({"timezone": "UTC"}))
    store.close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    out = context.Queue()
    at = (datetime(2026, 3, 1, 5, 0, tzinfo=UTC)).isoformat()
    racers = [
        context.Process(target=race_resolve, args=(shared_database_url, at, barrier, out))
        for _ in range(4)
    ]
    for racer in racers:
        racer.start()
    seen = [out.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
    assert len({session_id for session_id, _ in seen}) == 1
    assert sorted(str(reason) for _, reason in seen) == ["None", "None", "None", "daily"]
    store = open_store(shared_database_url)
    sessions = store.list(key="agent:main:main").sessions
    assert [s.status for s in sessions].count("active") == 1
    assert {s.id for s in sessions} == {stale.session.id, seen[0][0]}
    store.close()


def test_inbound_time_can_be_given(store: Any) -> None:
    config = SessionConfig.from_dict({"timezone": "UTC"})
    at = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    first = store.resolve(Inbound(channel="x", peer_id="1", at=at), config)
    later = store.resolve(Inbound(channel="x", peer_id="1", at=at + timedelta(hours=2)), config)
    assert first.reason == "new"
    assert later.reason == "daily"
