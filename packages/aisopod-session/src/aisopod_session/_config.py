"""Session configuration: OpenClaw's `session` options under Python names.

`SessionConfig.from_dict` loads an OpenClaw `session` config section as it is
(camelCase keys included) or the same options in snake_case. Every bad value
is answered by a `ConfigError` naming the field; keys aisopod does not use
are kept in `extra` (or refused with `strict=True`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from aisopod_session._errors import ConfigError
from aisopod_session.keys import DM_SCOPES, DmScope, chat_type_of_key, normalize_main_key

__all__ = [
    "ResetMode",
    "ResetPolicy",
    "RetentionPolicy",
    "SessionConfig",
    "host_timezone",
    "parse_duration",
    "parse_size",
]

ResetMode: TypeAlias = Literal["daily", "idle"]
DEFAULT_TRIGGERS: Final = ("/new", "/reset")
DEFAULT_IDLE_MINUTES: Final = 60


def _clamp_hour(value: int) -> int:
    return min(23, max(0, int(value)))


def _clamp_idle(value: int | None) -> int | None:
    return None if value is None else max(1, int(value))


@attrs.frozen
class ResetPolicy:
    """When a key's current session is stale and a new one starts.

    `daily`: stale once it started before the most recent `at_hour:00` in the
    configured zone. `idle`: stale once `idle_minutes` passed without activity
    (60 when not given). A daily policy with `idle_minutes` is stale when
    either expires first. Out-of-range values are clamped, as OpenClaw does:
    `at_hour` to 0-23, `idle_minutes` to at least 1.
    """

    mode: ResetMode = "daily"
    at_hour: int = attrs.field(default=4, converter=_clamp_hour)
    idle_minutes: int | None = attrs.field(default=None, converter=_clamp_idle)

    @property
    def idle_window(self) -> timedelta | None:
        """How long a session may go without activity, or `None` for no idle limit."""
        if self.idle_minutes is not None:
            return timedelta(minutes=self.idle_minutes)
        return timedelta(minutes=DEFAULT_IDLE_MINUTES) if self.mode == "idle" else None

    def last_boundary(self, now: datetime, zone: tzinfo) -> datetime | None:
        """The most recent daily reset time at or before `now` (None for idle mode)."""
        if self.mode != "daily":
            return None
        local = now.astimezone(zone)
        boundary = datetime(local.year, local.month, local.day, self.at_hour, tzinfo=zone)
        if boundary > now:
            yesterday = local.date() - timedelta(days=1)
            boundary = datetime(
                yesterday.year, yesterday.month, yesterday.day, self.at_hour, tzinfo=zone
            )
        return boundary

    def stale_reason(
        self, *, created_at: datetime, active_at: datetime, now: datetime, zone: tzinfo
    ) -> Literal["daily", "idle"] | None:
        """Why a session made at `created_at`, last active at `active_at`, is stale now."""
        boundary = self.last_boundary(now, zone)
        if boundary is not None and created_at < boundary:
            return "daily"
        window = self.idle_window
        if window is not None and now > active_at + window:
            return "idle"
        return None


@attrs.frozen
class RetentionPolicy:
    """What `maintain` removes: sessions inactive past `prune_after`, the least
    recently active beyond `max_sessions` per agent, and the oldest until the
    store is under `high_water_bytes` when it is over `max_bytes`.

    `mode="warn"` (the default) only reports; `"enforce"` removes. A key's
    current session that was active within `prune_after` is never touched.
    """

    mode: Literal["warn", "enforce"] = "warn"
    prune_after: timedelta = timedelta(days=30)
    max_sessions: int | None = 500
    max_bytes: int | None = None
    high_water_bytes: int | None = None

    @property
    def size_target(self) -> int | None:
        """The size a size-budget cleanup brings the store down to."""
        if self.max_bytes is None:
            return None
        return (
            self.high_water_bytes if self.high_water_bytes is not None else self.max_bytes * 4 // 5
        )


@attrs.frozen
class SessionConfig:
    """Routing and lifecycle settings (OpenClaw's `session` section)."""

    dm_scope: DmScope = "main"
    main_key: str = "main"
    identity_links: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    reset: ResetPolicy | None = None
    reset_by_type: Mapping[str, ResetPolicy] = attrs.field(factory=dict)
    reset_by_channel: Mapping[str, ResetPolicy] = attrs.field(factory=dict)
    reset_triggers: tuple[str, ...] = DEFAULT_TRIGGERS
    idle_minutes: int | None = None
    """Legacy: with no `reset` and no `reset_by_type`, idle mode with this many minutes."""
    timezone: str | None = None
    """IANA zone of daily resets; `None` is the host's zone."""
    retention: RetentionPolicy = attrs.field(factory=RetentionPolicy)
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    """Options aisopod does not use, kept as given."""

    @property
    def zone(self) -> tzinfo:
        """The zone daily boundaries are computed in."""
        return ZoneInfo(self.timezone) if self.timezone else host_timezone()

    def policy_for(self, key: str, channel: str | None = None) -> ResetPolicy:
        """The reset policy of a key: per channel, then per chat type, then the base."""
        if channel is not None:
            found = self.reset_by_channel.get(channel.strip().lower())
            if found is not None:
                return found
        by_type = self.reset_by_type.get(chat_type_of_key(key))
        if by_type is not None:
            return by_type
        if self.reset is not None:
            return self.reset
        if self.idle_minutes is not None and not self.reset_by_type:
            return ResetPolicy(mode="idle", idle_minutes=self.idle_minutes)
        return ResetPolicy()

    def trigger(self, text: str | None) -> tuple[str, str] | None:
        """(trigger, remainder) when `text` is a reset trigger or starts with one and a
        space; `None` otherwise."""
        if not text:
            return None
        stripped = text.strip()
        lowered = stripped.lower()
        for trigger in self.reset_triggers:
            word = trigger.strip().lower()
            if not word:
                continue
            if lowered == word:
                return trigger, ""
            if lowered.startswith(word) and stripped[len(word)].isspace():
                return trigger, stripped[len(word) :].strip()
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> SessionConfig:
        """Build a config from an OpenClaw `session` section or its snake_case twin.

        Raises:
            ConfigError: naming the field of the first bad value (and, with
                `strict`, of the first key aisopod does not know).
        """
        return _Reader("session", data, strict).config()


def host_timezone() -> tzinfo:
    """The host's zone, with its daylight-saving rules (`$TZ`, else /etc/localtime)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        zone = datetime.now().astimezone().tzinfo
        return zone if zone is not None else ZoneInfo("UTC")


# --- reading -----------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}

_KNOWN = {
    "dm_scope",
    "main_key",
    "identity_links",
    "reset",
    "reset_by_type",
    "reset_by_channel",
    "reset_triggers",
    "idle_minutes",
    "timezone",
    "retention",
}
_ALIASES = {"maintenance": "retention", "time_zone": "timezone", "tz": "timezone"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Reader:
    """Reads one section, remembering where it is for error messages."""

    def __init__(self, path: str, data: object, strict: bool) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be an object, got {type(data).__name__}", field=path)
        self.path = path
        self.strict = strict
        self.values: dict[str, Any] = {}
        self.given: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError("keys must be strings", field=path)
            name = _snake(key)
            name = _ALIASES.get(name, name)
            if name in self.values:
                raise ConfigError(f"given twice (as {self.given[name]!r} and {key!r})", field=path)
            self.values[name] = value
            self.given[name] = key

    def field(self, name: str) -> str:
        return f"{self.path}.{self.given.get(name, name)}"

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(reason, field=self.field(name))

    def config(self) -> SessionConfig:
        extra = {self.given[k]: v for k, v in self.values.items() if k not in _KNOWN}
        if self.strict and extra:
            raise self.fail(next(iter(self.values.keys() - _KNOWN)), "unknown option")
        kwargs: dict[str, Any] = {"extra": extra}
        if "dm_scope" in self.values:
            scope = self.values["dm_scope"]
            if scope not in DM_SCOPES:
                raise self.fail("dm_scope", f"must be one of {', '.join(DM_SCOPES)}")
            kwargs["dm_scope"] = scope
        if "main_key" in self.values:
            kwargs["main_key"] = normalize_main_key(self.text("main_key"))
        if "identity_links" in self.values:
            kwargs["identity_links"] = self.identity_links()
        if self.values.get("reset") is not None:
            kwargs["reset"] = self.policy(self.field("reset"), self.values["reset"])
        if "reset_by_type" in self.values:
            kwargs["reset_by_type"] = self.policies("reset_by_type", types=True)
        if "reset_by_channel" in self.values:
            kwargs["reset_by_channel"] = self.policies("reset_by_channel", types=False)
        if "reset_triggers" in self.values:
            extra_triggers = self.strings("reset_triggers")
            kwargs["reset_triggers"] = tuple(dict.fromkeys([*DEFAULT_TRIGGERS, *extra_triggers]))
        if self.values.get("idle_minutes") is not None:
            kwargs["idle_minutes"] = self.number("idle_minutes")
        if self.values.get("timezone") is not None:
            kwargs["timezone"] = self.zone("timezone")
        if self.values.get("retention") is not None:
            kwargs["retention"] = self.retention()
        return SessionConfig(**kwargs)

    def text(self, name: str) -> str:
        value = self.values[name]
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__}")
        return value

    def strings(self, name: str) -> list[str]:
        value = self.values[name]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return list(value)

    def number(self, name: str) -> int:
        value = self.values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {type(value).__name__}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(name, "must be finite")
        return int(value)

    def zone(self, name: str) -> str:
        zone = self.text(name)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise self.fail(name, f"unknown time zone {zone!r}") from err
        return zone

    def identity_links(self) -> dict[str, tuple[str, ...]]:
        links = self.values["identity_links"]
        if not isinstance(links, Mapping):
            raise self.fail("identity_links", "must be an object of name -> list of ids")
        result: dict[str, tuple[str, ...]] = {}
        for name, ids in links.items():
            if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
                raise ConfigError(
                    "must be a list of ids", field=f"{self.field('identity_links')}.{name}"
                )
            result[str(name)] = tuple(ids)
        return result

    def policy(self, path: str, data: object) -> ResetPolicy:
        reader = _Reader(path, data, self.strict)
        unknown = reader.values.keys() - {"mode", "at_hour", "idle_minutes"}
        if self.strict and unknown:
            raise reader.fail(next(iter(unknown)), "unknown option")
        kwargs: dict[str, Any] = {}
        if reader.values.get("mode") is not None:
            mode = reader.values["mode"]
            if mode not in ("daily", "idle"):
                raise reader.fail("mode", "must be daily or idle")
            kwargs["mode"] = mode
        if reader.values.get("at_hour") is not None:
            kwargs["at_hour"] = reader.number("at_hour")
        if reader.values.get("idle_minutes") is not None:
            kwargs["idle_minutes"] = reader.number("idle_minutes")
        return ResetPolicy(**kwargs)

    def policies(self, name: str, *, types: bool) -> dict[str, ResetPolicy]:
        data = self.values[name]
        if not isinstance(data, Mapping):
            raise self.fail(name, "must be an object")
        result: dict[str, ResetPolicy] = {}
        for key, value in data.items():
            label = str(key).strip().lower()
            if types:
                label = "direct" if label == "dm" else label
                if label not in ("direct", "group", "thread"):
                    raise ConfigError(
                        "must be direct, dm, group or thread", field=f"{self.field(name)}.{key}"
                    )
            result[label] = self.policy(f"{self.field(name)}.{key}", value)
        return result

    def retention(self) -> RetentionPolicy:
        reader = _Reader(self.field("retention"), self.values["retention"], self.strict)
        known = {"mode", "prune_after", "prune_days", "max_sessions", "max_entries"}
        known |= {"max_bytes", "max_disk_bytes", "high_water_bytes"}
        unknown = reader.values.keys() - known
        if self.strict and unknown:
            raise reader.fail(next(iter(unknown)), "unknown option")
        kwargs: dict[str, Any] = {}
        if reader.values.get("mode") is not None:
            if reader.values["mode"] not in ("warn", "enforce"):
                raise reader.fail("mode", "must be warn or enforce")
            kwargs["mode"] = reader.values["mode"]
        for name in ("prune_after", "prune_days"):
            if reader.values.get(name) is not None:
                kwargs["prune_after"] = reader.duration(name, default_unit="d")
        for name in ("max_sessions", "max_entries"):
            if reader.values.get(name) is not None:
                kwargs["max_sessions"] = reader.number(name)
                if kwargs["max_sessions"] < 1:
                    raise reader.fail(name, "must be at least 1")
        for name in ("max_bytes", "max_disk_bytes"):
            if reader.values.get(name) is not None:
                kwargs["max_bytes"] = reader.size(name)
        if reader.values.get("high_water_bytes") is not None:
            high = reader.values["high_water_bytes"]
            if isinstance(high, str) and high.strip().endswith("%"):
                if "max_bytes" not in kwargs:
                    raise reader.fail("high_water_bytes", "a percentage needs maxDiskBytes")
                try:
                    share = float(high.strip()[:-1])
                except ValueError as err:
                    raise reader.fail("high_water_bytes", "not a percentage") from err
                kwargs["high_water_bytes"] = int(kwargs["max_bytes"] * share / 100)
            else:
                kwargs["high_water_bytes"] = reader.size("high_water_bytes")
        return RetentionPolicy(**kwargs)

    def duration(self, name: str, *, default_unit: str) -> timedelta:
        return parse_duration(self.values[name], field=self.field(name), default_unit=default_unit)

    def size(self, name: str) -> int:
        return parse_size(self.values[name], field=self.field(name))


def parse_duration(value: object, *, field: str, default_unit: str = "d") -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `500ms`; a bare number is in `default_unit`.

    Raises:
        ConfigError: naming `field`.
    """
    if isinstance(value, bool):
        raise ConfigError("must be a duration such as 30d or 12h", field=field)
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError("must not be negative", field=field)
        return value * _DURATION_UNITS[default_unit]
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError("must be a duration such as 30d or 12h", field=field)
    unit = (match.group(2) or default_unit).lower()
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_size(value: object, *, field: str) -> int:
    """`500mb`, `2gb`, `1048576`: bytes.

    Raises:
        ConfigError: naming `field`.
    """
    if isinstance(value, bool):
        raise ConfigError("must be a size such as 500mb", field=field)
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError("must not be negative", field=field)
        return int(value)
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError("must be a size such as 500mb", field=field)
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
