"""Session configuration: OpenClaw's `session` options under Python names.

`SessionConfig.from_dict` loads an OpenClaw `session` config section as it is
(camelCase keys included) or the same options in snake_case. Every bad value
is answered by a `ConfigError` naming the field; keys aisopod does not use
are kept in `extra` (or refused with `strict=True`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final, Literal, NewType, TypeAlias, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from aisopod_session._errors import ConfigError
from aisopod_session.keys import DmScope, chat_type_of_key, normalize_main_key

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
        try:
            return _converter(strict).structure(data, SessionConfig)
        except (ConfigError, cattrs.BaseValidationError) as err:
            raise _config_error(err, data, "session") from err


def retention_options_given(data: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """The retention options a `session` section sets, by field name, each with its
    path as the section spells it (`maintenance.maxSessions`) and its value as
    written; `null` is not set.

    Raises:
        ConfigError: for a section that is not an object.
    """
    section = _names(SessionConfig, data).get("retention")
    if section is None or data[section] is None:
        return {}
    spelled = _names(RetentionPolicy, data[section])
    return {
        name: (f"{section}.{spelled[name]}", value)
        for name, value in _values(RetentionPolicy, data[section]).items()
        if name in _known(RetentionPolicy)
    }


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
#
# cattrs reads a section: one generated function per class, a hook per field for
# OpenClaw's rules and messages. Keys are brought to field names first (camelCase or
# snake_case, aliases, legacy names), and a failure is traced back through the notes
# cattrs attaches to the keys as given: `session.resetByChannel.Telegram.atHour`.

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

_ALIASES: Final = {"maintenance": "retention", "time_zone": "timezone", "tz": "timezone"}
# OpenClaw's names for aisopod's fields; when both are given, OpenClaw's wins.
_LEGACY: Final[Mapping[type, Mapping[str, str]]] = {
    RetentionPolicy: {
        "prune_days": "prune_after",
        "max_entries": "max_sessions",
        "max_disk_bytes": "max_bytes",
    },
}
# Options where `null` is a bad value; for the others it means "not given".
_NULL_IS_A_VALUE: Final = {
    "dm_scope",
    "main_key",
    "identity_links",
    "reset_by_type",
    "reset_by_channel",
    "reset_triggers",
}

_Hook: TypeAlias = Callable[[Any, Any], Any]
_ChatType = NewType("_ChatType", str)
_Channel = NewType("_Channel", str)
_Ids = NewType("_Ids", tuple[str, ...])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _known(cls: type) -> set[str]:
    return {field.name for field in attrs.fields(cls)} - {"extra"}


def _names(cls: type, data: object) -> dict[str, str]:
    """Field name -> key as given, for every key of a section (unknown ones too)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be an object, got {type(data).__name__}")
    names: dict[str, str] = {}
    for key in data:
        if not isinstance(key, str):
            raise ConfigError("keys must be strings")
        name = _ALIASES.get(_snake(key), _snake(key))
        if name in names:
            raise ConfigError(f"given twice (as {names[name]!r} and {key!r})")
        names[name] = key
    for legacy, name in _LEGACY.get(cls, {}).items():
        if legacy in names:
            names[name] = names.pop(legacy)
    return names


def _values(cls: type, data: Any) -> dict[str, Any]:
    """A section under field names, less the options whose `null` means "not given"."""
    known = _known(cls)
    return {
        name: data[key]
        for name, key in _names(cls, data).items()
        if data[key] is not None or name not in known or name in _NULL_IS_A_VALUE
    }


def _number(value: Any, _: object = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError("must be finite")
    return int(value)


def _count(value: Any, _: object) -> int:
    count = _number(value)
    if count < 1:
        raise ConfigError("must be at least 1")
    return count


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {type(value).__name__}")
    return value


def _zone(value: Any, _: object) -> str:
    zone = _text(value)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"unknown time zone {zone!r}") from err
    return zone


def _is_literal(kind: object) -> bool:
    return get_origin(kind) is Literal


def _choice(value: Any, kind: Any) -> Any:
    choices = get_args(kind)
    if value not in choices:
        listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"
        raise ConfigError(f"must be {listed}")
    return value


def _strings(message: str) -> _Hook:
    # The list is refused whole: the error names the option, not an index in it.
    def hook(value: Any, _: object) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(message)
        return tuple(value)

    return hook


def _triggers(value: Any, _: object) -> tuple[str, ...]:
    given = _strings("must be a list of strings")(value, _)
    return tuple(dict.fromkeys([*DEFAULT_TRIGGERS, *given]))


def _chat_type(key: Any, _: object) -> str:
    label = str(key).strip().lower()
    label = "direct" if label == "dm" else label
    if label not in ("direct", "group", "thread"):
        raise ConfigError("must be direct, dm, group or thread")
    return label


def _percentage(text: str, of: int | None) -> int:
    if of is None:
        raise ConfigError("a percentage needs maxDiskBytes")
    try:
        return int(of * float(text.strip()[:-1]) / 100)
    except (ValueError, OverflowError) as err:
        raise ConfigError("not a percentage") from err


def _hooks(**hooks: _Hook) -> dict[str, Any]:
    return {name: cattrs.override(struct_hook=hook) for name, hook in hooks.items()}


@functools.cache
def _converter(strict: bool) -> cattrs.Converter:
    """The converter of configuration (a user's file, not aisopod's own JSON, so not
    the shared converter); with `strict`, unknown keys are errors."""
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=strict)
    converter.register_structure_hook_func(_is_literal, _choice)
    converter.register_structure_hook(int, _number)
    converter.register_structure_hook(_ChatType, _chat_type)
    converter.register_structure_hook(_Channel, lambda key, _: str(key).strip().lower())
    converter.register_structure_hook(_Ids, _strings("must be a list of ids"))

    def mapping(of: Any, message: str) -> _Hook:
        def hook(value: Any, _: object) -> Any:
            if not isinstance(value, Mapping):
                raise ConfigError(message)
            return converter.structure(value, of)

        return hook

    reset = make_dict_structure_fn(ResetPolicy, converter)
    # parse_duration and parse_size name a field; the path replaces it (_config_error).
    retention = make_dict_structure_fn(
        RetentionPolicy,
        converter,
        **_hooks(
            prune_after=lambda value, _: parse_duration(value, field="prune_after"),
            max_sessions=_count,
            max_bytes=lambda value, _: parse_size(value, field="max_bytes"),
            high_water_bytes=lambda value, _: parse_size(value, field="high_water_bytes"),
        ),
    )

    def structure_retention(data: Any, cls: type[RetentionPolicy]) -> RetentionPolicy:
        values = _values(cls, data)
        share = values.get("high_water_bytes")
        if not (isinstance(share, str) and share.strip().endswith("%")):
            return retention(values, cls)
        del values["high_water_bytes"]  # a share of max_bytes, known once it is read
        policy = retention(values, cls)
        try:
            return attrs.evolve(policy, high_water_bytes=_percentage(share, policy.max_bytes))
        except ConfigError as err:  # reported as cattrs reports a field's failure
            err.add_note(cattrs.AttributeValidationNote("a percentage", "high_water_bytes", str))
            raise cattrs.ClassValidationError("While structuring", [err], cls) from None

    converter.register_structure_hook(ResetPolicy, lambda data, cls: reset(_values(cls, data), cls))
    converter.register_structure_hook(RetentionPolicy, structure_retention)
    session = make_dict_structure_fn(
        SessionConfig,
        converter,
        extra=cattrs.override(omit=True),
        **_hooks(
            main_key=lambda value, _: normalize_main_key(_text(value)),
            identity_links=mapping(dict[str, _Ids], "must be an object of name -> list of ids"),
            reset_by_type=mapping(dict[_ChatType, ResetPolicy], "must be an object"),
            reset_by_channel=mapping(dict[_Channel, ResetPolicy], "must be an object"),
            reset_triggers=_triggers,
            timezone=_zone,
        ),
    )

    def structure_session(data: Any, cls: type[SessionConfig]) -> SessionConfig:
        config = session(_values(cls, data), cls)
        known = _known(cls)
        extra = {key: data[key] for name, key in _names(cls, data).items() if name not in known}
        return attrs.evolve(config, extra=extra)

    converter.register_structure_hook(SessionConfig, structure_session)
    return converter


def _config_error(err: BaseException, data: Any, path: str) -> ConfigError:
    """The first failure cattrs reports in `err`, at its path in `data` as given."""
    if isinstance(err, cattrs.ForbiddenExtraKeysError):
        names = _names(err.cl, data).items()
        key = next(key for name, key in names if name in err.extra_fields)
        return ConfigError("unknown option", field=f"{path}.{key}")
    if isinstance(err, cattrs.BaseValidationError):
        # Unknown keys before bad values, section by section, as always.
        first = min(
            err.exceptions, key=lambda sub: not isinstance(sub, cattrs.ForbiddenExtraKeysError)
        )
        for note in getattr(first, "__notes__", ()):
            if isinstance(note, cattrs.AttributeValidationNote):
                key = _names(err.cl, data)[note.name]
                return _config_error(first, data[key], f"{path}.{key}")
            if isinstance(note, cattrs.IterableValidationNote):
                return _config_error(first, data[note.index], f"{path}.{note.index}")
        return _config_error(first, data, path)
    return ConfigError(err.reason if isinstance(err, ConfigError) else str(err), field=path)


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
