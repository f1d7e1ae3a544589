"""Session configuration: OpenClaw's section loads as is; bad values name their field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import ConfigError, ResetPolicy, RetentionPolicy, SessionConfig
from aisopod_session.keys import DM_SCOPES

OPENCLAW_SECTION: dict[str, Any] = {
    "dmScope": "per-channel-peer",
    "mainKey": "Home",
    "identityLinks": {"alice": ["telegram:123", "discord:987"]},
    "reset": {"mode": "daily", "atHour": 5, "idleMinutes": 120},
    "resetByType": {"dm": {"mode": "idle", "idleMinutes": 30}, "group": {"atHour": 6}},
    "resetByChannel": {"Discord": {"mode": "idle", "idleMinutes": 10}},
    "resetTriggers": ["/fresh"],
    "maintenance": {
        "mode": "enforce",
        "pruneAfter": "14d",
        "maxEntries": 200,
        "rotateBytes": "10mb",
        "maxDiskBytes": "1gb",
        "highWaterBytes": "50%",
    },
    "store": "~/.openclaw/agents/{agentId}/sessions/sessions.json",
    "typingIntervalSeconds": 6,
}


def test_an_openclaw_section_loads_as_is() -> None:
    config = SessionConfig.from_dict(OPENCLAW_SECTION)
    assert config.dm_scope == "per-channel-peer"
    assert config.main_key == "home"
    assert config.identity_links == {"alice": ("telegram:123", "discord:987")}
    assert config.reset == ResetPolicy("daily", at_hour=5, idle_minutes=120)
    assert config.reset_by_type == {
        "direct": ResetPolicy("idle", idle_minutes=30),
        "group": ResetPolicy(at_hour=6),
    }
    assert config.reset_by_channel == {"discord": ResetPolicy("idle", idle_minutes=10)}
    assert config.reset_triggers == ("/new", "/reset", "/fresh")
    assert config.retention == RetentionPolicy(
        mode="enforce",
        prune_after=timedelta(days=14),
        max_sessions=200,
        max_bytes=1024**3,
        high_water_bytes=1024**3 // 2,
    )
    assert config.extra == {
        "store": "~/.openclaw/agents/{agentId}/sessions/sessions.json",
        "typingIntervalSeconds": 6,
    }


def test_snake_case_names_work_too() -> None:
    config = SessionConfig.from_dict(
        {"dm_scope": "per-peer", "reset": {"mode": "idle"}, "timezone": "Europe/Berlin"}
    )
    assert config.dm_scope == "per-peer"
    assert config.reset == ResetPolicy("idle")
    assert config.timezone == "Europe/Berlin"


def test_defaults() -> None:
    config = SessionConfig.from_dict({})
    assert config.dm_scope == "main"
    assert config.policy_for("agent:main:main") == ResetPolicy("daily", at_hour=4)
    assert config.retention == RetentionPolicy()
    assert config.retention.prune_after == timedelta(days=30)
    assert config.retention.max_sessions == 500


def test_out_of_range_values_are_clamped_like_openclaw() -> None:
    config = SessionConfig.from_dict({"reset": {"atHour": 30, "idleMinutes": 0}})
    assert config.reset == ResetPolicy(at_hour=23, idle_minutes=1)
    assert ResetPolicy(at_hour=-3).at_hour == 0
    assert ResetPolicy("idle").idle_window == timedelta(minutes=60)


def test_policy_overrides_most_specific_first() -> None:
    config = SessionConfig.from_dict(OPENCLAW_SECTION)
    assert config.policy_for("agent:main:discord:group:g1", "discord").idle_minutes == 10
    assert config.policy_for("agent:main:slack:group:g1", "slack").at_hour == 6
    assert config.policy_for("agent:main:slack:channel:c:thread:t", "slack").at_hour == 5
    assert config.policy_for("agent:main:telegram:direct:1", "telegram").mode == "idle"


def test_legacy_idle_minutes_means_idle_mode() -> None:
    config = SessionConfig.from_dict({"idleMinutes": 45})
    assert config.policy_for("agent:main:main") == ResetPolicy("idle", idle_minutes=45)
    with_reset = SessionConfig.from_dict({"idleMinutes": 45, "reset": {"atHour": 3}})
    assert with_reset.policy_for("agent:main:main") == ResetPolicy(at_hour=3)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"dmScope": "per-planet"}, "session.dmScope"),
        ({"mainKey": 5}, "session.mainKey"),
        ({"identityLinks": ["alice"]}, "session.identityLinks"),
        ({"identityLinks": {"alice": "telegram:1"}}, "session.identityLinks.alice"),
        ({"reset": "daily"}, "session.reset"),
        ({"reset": {"mode": "weekly"}}, "session.reset.mode"),
        ({"reset": {"atHour": "four"}}, "session.reset.atHour"),
        ({"reset": {"idleMinutes": float("nan")}}, "session.reset.idleMinutes"),
        ({"resetByType": {"channel": {}}}, "session.resetByType.channel"),
        ({"resetByType": {"group": {"mode": 1}}}, "session.resetByType.group.mode"),
        ({"resetByChannel": {"x": {"atHour": True}}}, "session.resetByChannel.x.atHour"),
        ({"resetTriggers": "/new"}, "session.resetTriggers"),
        ({"idleMinutes": "10"}, "session.idleMinutes"),
        ({"timezone": "Mars/Olympus"}, "session.timezone"),
        ({"maintenance": {"mode": "delete"}}, "session.maintenance.mode"),
        ({"maintenance": {"pruneAfter": "soon"}}, "session.maintenance.pruneAfter"),
        ({"maintenance": {"maxEntries": 0}}, "session.maintenance.maxEntries"),
        ({"maintenance": {"maxDiskBytes": "lots"}}, "session.maintenance.maxDiskBytes"),
        ({"maintenance": {"highWaterBytes": "80%"}}, "session.maintenance.highWaterBytes"),
        ({"dmScope": "main", "dm_scope": "per-peer"}, "session"),
    ],
)
def test_bad_values_name_their_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SessionConfig.from_dict(section)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("section", "field", "reason"),
    [
        # nested values, named by the keys as given (spelling and case kept)
        (
            {"resetByChannel": {"telegram": {"mode": "weekly"}}},
            "session.resetByChannel.telegram.mode",
            "must be daily or idle",
        ),
        (
            {"reset_by_channel": {"TeleGram": {"at_hour": "4"}}},
            "session.reset_by_channel.TeleGram.at_hour",
            "must be a number, got str",
        ),
        (
            {"resetByType": {"dm": {"idleMinutes": float("inf")}}},
            "session.resetByType.dm.idleMinutes",
            "must be finite",
        ),
        ({"maintenance": "weekly"}, "session.maintenance", "must be an object, got str"),
        ({"retention": {"mode": "delete"}}, "session.retention.mode", "must be warn or enforce"),
        ({"tz": "Mars/Olympus"}, "session.tz", "unknown time zone 'Mars/Olympus'"),
        # legacy names are named as given
        (
            {"maintenance": {"pruneDays": "soon"}},
            "session.maintenance.pruneDays",
            "must be a duration such as 30d or 12h",
        ),
        (
            {"maintenance": {"max_sessions": 0}},
            "session.maintenance.max_sessions",
            "must be at least 1",
        ),
        (
            {"maintenance": {"maxDiskBytes": "1gb", "highWaterBytes": "half%"}},
            "session.maintenance.highWaterBytes",
            "not a percentage",
        ),
        # a wrong type in a list refuses the list; in an object, names its key
        ({"resetTriggers": ["/fresh", 5]}, "session.resetTriggers", "must be a list of strings"),
        (
            {"identityLinks": {"alice": ["telegram:1"], "bob": ["discord:2", None]}},
            "session.identityLinks.bob",
            "must be a list of ids",
        ),
        (
            {"resetByType": {"group": None}},
            "session.resetByType.group",
            "must be an object, got NoneType",
        ),
        (
            {"resetByChannel": {"x": "idle"}},
            "session.resetByChannel.x",
            "must be an object, got str",
        ),
        ({"resetByChannel": ["x"]}, "session.resetByChannel", "must be an object"),
        # the same option under both spellings, at any depth
        (
            {"reset": {"atHour": 3, "at_hour": 4}},
            "session.reset",
            "given twice (as 'atHour' and 'at_hour')",
        ),
        (
            {"maintenance": {}, "retention": {}},
            "session",
            "given twice (as 'maintenance' and 'retention')",
        ),
        ({"dmScope": None}, "session.dmScope", "must be one of " + ", ".join(DM_SCOPES)),
        ({1: "main"}, "session", "keys must be strings"),
    ],
)
def test_error_paths(section: dict[Any, Any], field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SessionConfig.from_dict(section)
    assert caught.value.field == field
    assert caught.value.reason == reason
    assert str(caught.value) == f"{field}: {reason}"


def test_a_value_python_cannot_hold_is_a_config_error_at_its_field() -> None:
    with pytest.raises(ConfigError) as caught:
        SessionConfig.from_dict({"maintenance": {"pruneAfter": float("nan")}})
    assert caught.value.field == "session.maintenance.pruneAfter"


def test_null_means_not_given_except_where_openclaw_refuses_it() -> None:
    config = SessionConfig.from_dict(
        {
            "reset": {"mode": None, "atHour": None},
            "idleMinutes": None,
            "timezone": None,
            "maintenance": {"maxEntries": None, "pruneAfter": None},
        }
    )
    assert config.reset == ResetPolicy()
    assert config.idle_minutes is None
    assert config.timezone is None
    assert config.retention == RetentionPolicy()
    for option in ("mainKey", "identityLinks", "resetByType", "resetTriggers"):
        with pytest.raises(ConfigError) as caught:
            SessionConfig.from_dict({option: None})
        assert caught.value.field == f"session.{option}"


def test_openclaw_names_win_over_aisopod_names() -> None:
    config = SessionConfig.from_dict(
        {"maintenance": {"maxSessions": 20, "maxEntries": 10, "max_bytes": 5, "maxDiskBytes": 9}}
    )
    assert config.retention.max_sessions == 10
    assert config.retention.max_bytes == 9


def test_chat_types_and_channels_are_normalised() -> None:
    config = SessionConfig.from_dict(
        {"resetByType": {" DM ": {"atHour": 1}}, "resetByChannel": {" TeleGram ": {"atHour": 2}}}
    )
    assert config.reset_by_type == {"direct": ResetPolicy(at_hour=1)}
    assert config.reset_by_channel == {"telegram": ResetPolicy(at_hour=2)}


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"resetByChannel": {"tg": {"atHour": 1, "hour": 2}}}, "session.resetByChannel.tg.hour"),
        ({"resetByType": {"group": {"idle": 5}}}, "session.resetByType.group.idle"),
        ({"maintenance": {"rotateBytes": "10mb"}}, "session.maintenance.rotateBytes"),
        ({"typingIntervalSeconds": None}, "session.typingIntervalSeconds"),
        ({"extra": {}}, "session.extra"),
        # unknown keys are reported before bad values of the same section
        ({"dmScope": "per-planet", "store": "sessions.json"}, "session.store"),
        ({"reset": {"mode": "weekly", "hour": 4}}, "session.reset.hour"),
    ],
)
def test_strict_mode_names_the_unknown_key(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SessionConfig.from_dict(section, strict=True)
    assert caught.value.field == field
    assert caught.value.reason == "unknown option"


def test_without_strict_unknown_nested_keys_are_ignored() -> None:
    config = SessionConfig.from_dict({"reset": {"hour": 9}, "maintenance": {"rotateBytes": 1}})
    assert config.reset == ResetPolicy()
    assert config.retention == RetentionPolicy()
    assert config.extra == {}


def test_strict_mode_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        SessionConfig.from_dict({"dmScop": "main"}, strict=True)
    assert caught.value.field == "session.dmScop"
    with pytest.raises(ConfigError):
        SessionConfig.from_dict({"reset": {"hour": 4}}, strict=True)


def test_a_section_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError):
        SessionConfig.from_dict(["dmScope"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/new", ("/new", "")),
        ("  /RESET  ", ("/reset", "")),
        ("/new plan a trip", ("/new", "plan a trip")),
        ("/fresh\tstart over", ("/fresh", "start over")),
        ("/newer things", None),
        ("please /new", None),
        ("", None),
        (None, None),
    ],
)
def test_reset_triggers(text: str | None, expected: tuple[str, str] | None) -> None:
    config = SessionConfig.from_dict({"resetTriggers": ["/fresh"]})
    assert config.trigger(text) == expected
