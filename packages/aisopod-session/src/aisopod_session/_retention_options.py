"""The retention policy of a `maintain` run: its flags and its config file, combined.

The rules (`maintain --help` and the README say them too):

- Each setting comes from the flag that gives it, else from the config file's
  `maintenance` (or `retention`) section, else from `RetentionPolicy`'s
  defaults (warn, 30 days, 500 sessions per agent, no size budget).
- A setting given by a flag and by the file with different values is a
  `ConfigError` naming both; the same value twice is no conflict.
- `--enforce` sets the mode to enforce, and so does `mode: "enforce"` in the
  file; `--dry-run` reports what the policy would remove and removes nothing,
  whatever the mode says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from aisopod_session._config import RetentionPolicy, SessionConfig, retention_options_given
from aisopod_session._errors import ConfigError

__all__ = ["Flag", "combined_policy"]


@attrs.frozen
class Flag:
    """A retention setting given on the command line."""

    value: Any
    """Its value, as the `RetentionPolicy` field holds it."""
    typed: str
    """Its argument as typed (`100`, `30d`; empty for a switch), for messages."""


def combined_policy(
    flags: Mapping[str, Flag],
    config: Mapping[str, Any] | None,
    config_name: str,
    *,
    dry_run: bool = False,
) -> RetentionPolicy:
    """The policy of `flags` (by `RetentionPolicy` field name) over the `config` section's.

    Raises:
        ConfigError: for a bad config (its `field` is `config`), or a flag the
            config contradicts (its `field` is the flag's field name).
    """
    policy = RetentionPolicy()
    if config is not None:
        try:
            policy = SessionConfig.from_dict(config).retention
            given = retention_options_given(config)
        except ConfigError as err:
            # Said with the file it is in: `--config: x.json: session.maintenance...`.
            raise ConfigError(f"{config_name}: {err}", field="config") from err
        for name, flag in flags.items():
            if name in given and getattr(policy, name) != flag.value:
                path, written = given[name]
                raise ConfigError(
                    f"{flag.typed + ' ' if flag.typed else ''}contradicts {path}"
                    f" = {orjson.dumps(written).decode()} in {config_name}"
                    " (give the setting in one place, or the same value in both)",
                    field=name,
                )
    policy = attrs.evolve(policy, **{name: flag.value for name, flag in flags.items()})
    return attrs.evolve(policy, mode="warn") if dry_run else policy
