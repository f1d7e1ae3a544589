"""A native JSONL dump of a whole store, and its restore: a backup, or a move.

The file is one JSON object per line: a header (`format`, `version`), then
for each session a `session` line (a `SessionImage`) followed by its `entry`
lines (`EntryImage`s), oldest first, then a `shared_state` line for each
`user:` and `agent:` value (a `SharedValue`: `scope`, `agent_id`, `user_id`,
`key` without its prefix, `value`), each owner's keys together. Every line
but the header has its `kind` beside the fields of its value.

A session's own state needs no lines of its own: its changes are `state`
entries, and a restore rebuilds the state at every entry from them. Dump and
restore stream (memory is bounded by one line and a page of entries, or one
owner's shared values), and restore(dump(store)) gives back every session,
binding, entry and shared value exactly. Sessions are restored one
transaction each, so a failed restore leaves whole sessions or none of a
session.

Version 2 added the `shared_state` lines; version 1 dumps (sessions and
entries only) are still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple

import attrs
import orjson

from aisopod_session._errors import TranscriptError
from aisopod_session.transfer._images import (
    EntryCount,
    EntryImage,
    Progress,
    SessionImage,
    SharedValue,
    counted,
    read_images,
    stream_shared_state,
    write_image,
    write_unless_there,
)
from aisopod_session.transfer._shared_state import restore_shared_state
from aisopod_shared import converter

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["DUMP_FORMAT", "DumpReport", "RestoreReport", "dump_store", "restore_store"]

DUMP_FORMAT: Final = "aisopod-session-dump"
"""The `format` of a dump's header line."""
DUMP_VERSION: Final = 2
"""The `version` of a dump's header line: the one this module writes."""
_READS: Final = {1: ("session",), 2: ("session", "shared_state")}
"""The dump versions this module reads, with the kinds of line each may hold
(after the `entry` lines that follow a `session` line)."""


class DumpReport(NamedTuple):
    """What `dump_store` wrote."""

    sessions: int
    entries: int
    shared_values: int
    """`user:` and `agent:` values (none when the dump holds chosen sessions)."""


def dump_store(
    store: SessionStore,
    out: IO[bytes],
    *,
    session_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
    on_entries: EntryCount | None = None,
) -> DumpReport:
    """Write every session of `store` (of its agent, when scoped), then every
    `user:` and `agent:` value (of its agent, when scoped), to `out` as JSONL.

    With `session_ids`, the dump holds those sessions only: the shared state
    belongs to no one session, and stays out. `progress` is told after each
    session, `on_entries` as entries are written.
    """
    out.write(orjson.dumps({"format": DUMP_FORMAT, "version": DUMP_VERSION}) + b"\n")
    sessions = entries = shared = 0
    for image, stream in read_images(store, session_ids):
        sessions += 1
        out.write(orjson.dumps({"kind": "session", **converter.unstructure(image)}) + b"\n")
        for entry in counted(stream, on_entries):
            entries += 1
            out.write(orjson.dumps({"kind": "entry", **converter.unstructure(entry)}) + b"\n")
        if progress is not None:
            progress(sessions, image)
    if session_ids is None:
        for value in stream_shared_state(store):
            shared += 1
            out.write(
                orjson.dumps({"kind": "shared_state", **converter.unstructure(value)}) + b"\n"
            )
    return DumpReport(sessions, entries, shared)


@attrs.frozen
class RestoreReport:
    """What `restore_store` wrote."""

    sessions: tuple[str, ...]
    entries: int
    shared_values: int = 0
    """`user:` and `agent:` values written."""
    shared_kept: int = 0
    """`user:` and `agent:` values of the dump left out: the store had the key
    already (and `replace` was not given)."""
    skipped: tuple[str, ...] = ()
    """Sessions of the dump left out: the store had them already (`skip_existing`)."""


class _Lines:
    """The dump's lines, parsed, with one line of look-ahead."""

    def __init__(self, lines: Iterable[bytes | str], name: str) -> None:
        self._lines = enumerate(lines, start=1)
        self._name = name
        self._ahead: tuple[int, dict[str, Any]] | None = None
        self.number = 0

    def peek(self) -> dict[str, Any] | None:
        if self._ahead is None:
            for number, raw in self._lines:
                if not raw.strip():
                    continue
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError as err:
                    raise TranscriptError(self._name, number, f"not JSON ({err})") from err
                if not isinstance(value, dict):
                    raise TranscriptError(self._name, number, "not a JSON object")
                self._ahead = (number, value)
                break
            else:
                return None
        return self._ahead[1]

    def take(self) -> dict[str, Any]:
        value = self.peek()
        assert value is not None
        assert self._ahead is not None
        self.number = self._ahead[0]
        self._ahead = None
        return value

    def error(self, reason: str) -> TranscriptError:
        return TranscriptError(self._name, self.number, reason)


def restore_store(
    store: SessionStore,
    lines: Iterable[bytes | str],
    *,
    name: str = "<dump>",
    replace: bool = False,
    skip_existing: bool = False,
    progress: Progress | None = None,
    on_entries: EntryCount | None = None,
) -> RestoreReport:
    """Write the sessions of a dump into `store`, one transaction each, and its
    `user:` and `agent:` values, a page per transaction.

    A session already in the store is an error, unless `replace` (it is
    written again) or `skip_existing` (it is left as it is: a restore run
    again after a failure finishes the work, and two restores of one dump at
    once end as one after the other would); a shared value whose key the
    store already has is left out (the store's value stays), unless
    `replace`. `progress` is told after each session written or skipped,
    `on_entries` as entries go by. A scoped store takes only its agent's sessions
    and values: another agent's is refused.

    Raises:
        TranscriptError: naming the line of anything malformed (the session
            being read is not written; earlier ones are).
        SessionExists: when a session is already in the store (and not `replace`).
        AccessDenied: for another agent's session or value, into a scoped store.
    """
    reader = _Lines(lines, name)
    header = reader.peek()
    if header is None or header.get("format") != DUMP_FORMAT:
        raise TranscriptError(name, 1, f"not an {DUMP_FORMAT} file")
    reader.take()
    version = header.get("version")
    kinds = _READS.get(version) if isinstance(version, int) else None
    if kinds is None:
        readable = ", ".join(str(v) for v in _READS)
        raise reader.error(f"dump version {version!r} is not one this library reads ({readable})")
    restored: list[str] = []
    skipped: list[str] = []
    entries = shared = kept = 0
    while (record := reader.peek()) is not None:
        kind = record.get("kind")
        if kind == "shared_state" and kind in kinds:
            written, held = restore_shared_state(store, _shared_values(reader), replace=replace)
            shared += written
            kept += held
            continue
        reader.take()
        if kind != "session":
            raise reader.error(f"expected a {' or '.join(kinds)} line")
        image = _structure(reader, record, SessionImage)
        counter = [0]
        stream = counted(_entries(reader, counter), on_entries)
        if skip_existing and not replace:
            if write_unless_there(store, image, stream) is None:
                skipped.append(image.id)
                for _ in stream:  # the dump's next line follows this session's entries
                    pass
                if progress is not None:
                    progress(len(restored) + len(skipped), image)
                continue
        else:
            write_image(store, image, stream, replace=replace)
        restored.append(image.id)
        entries += counter[0]
        if progress is not None:
            progress(len(restored) + len(skipped), image)
    return RestoreReport(tuple(restored), entries, shared, kept, tuple(skipped))


def _entries(reader: _Lines, counter: list[int]) -> Iterator[EntryImage]:
    while (record := reader.peek()) is not None and record.get("kind") == "entry":
        reader.take()
        counter[0] += 1
        yield _structure(reader, record, EntryImage)


def _shared_values(reader: _Lines) -> Iterator[SharedValue]:
    while (record := reader.peek()) is not None and record.get("kind") == "shared_state":
        reader.take()
        value: SharedValue = _structure(reader, record, SharedValue)
        if value.scope not in ("user", "agent"):
            raise reader.error(f"a shared_state line's scope is user or agent, not {value.scope!r}")
        if (value.user_id is None) != (value.scope == "agent"):
            raise reader.error("a user value has a user_id, an agent value none")
        if not value.key:
            raise reader.error("a shared_state line's key must not be empty")
        yield value


def _structure(reader: _Lines, record: dict[str, Any], cls: type[Any]) -> Any:
    fields = {k: v for k, v in record.items() if k != "kind"}
    try:
        return converter.structure(fields, cls)
    except Exception as err:  # cattrs reports groups of errors: one line says enough
        raise reader.error(f"not a valid {cls.__name__} line") from err
