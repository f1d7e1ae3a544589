"""A native JSONL dump of a whole store, and its restore: a backup, or a move.

The file is one JSON object per line: a header, then for each session a
`session` line followed by its `entry` lines, oldest first. Dump and restore
stream (memory is bounded by one line and a page of entries), and
restore(dump(store)) gives back every session, binding and entry exactly.
Sessions are restored one transaction each, so a failed restore leaves
whole sessions or none of a session.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final

import attrs
import orjson

from aisopod_session._errors import TranscriptError
from aisopod_session.transfer._images import (
    EntryImage,
    Progress,
    SessionImage,
    read_images,
    write_image,
)
from aisopod_shared import converter

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["DUMP_FORMAT", "RestoreReport", "dump_store", "restore_store"]

DUMP_FORMAT: Final = "aisopod-session-dump"
"""The `format` of a dump's header line."""
DUMP_VERSION: Final = 1
"""The `version` of a dump's header line: the one this module writes and reads."""


def dump_store(
    store: SessionStore,
    out: IO[bytes],
    *,
    session_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Write every session of `store` (of its agent, when scoped; or those of
    `session_ids`) to `out` as JSONL.

    Returns (sessions, entries) written.
    """
    out.write(orjson.dumps({"format": DUMP_FORMAT, "version": DUMP_VERSION}) + b"\n")
    sessions = entries = 0
    for image, stream in read_images(store, session_ids):
        sessions += 1
        out.write(orjson.dumps({"kind": "session", **converter.unstructure(image)}) + b"\n")
        for entry in stream:
            entries += 1
            out.write(orjson.dumps({"kind": "entry", **converter.unstructure(entry)}) + b"\n")
        if progress is not None:
            progress(sessions, image)
    return sessions, entries


@attrs.frozen
class RestoreReport:
    """What `restore_store` wrote."""

    sessions: tuple[str, ...]
    entries: int


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
    progress: Progress | None = None,
) -> RestoreReport:
    """Write the sessions of a dump into `store`, one transaction each.

    Raises:
        TranscriptError: naming the line of anything malformed (the session
            being read is not written; earlier ones are).
        SessionExists: when a session is already in the store (and not `replace`).
    """
    reader = _Lines(lines, name)
    header = reader.peek()
    if header is None or header.get("format") != DUMP_FORMAT:
        raise TranscriptError(name, 1, f"not an {DUMP_FORMAT} file")
    reader.take()
    if header.get("version") != DUMP_VERSION:
        raise reader.error(f"dump version {header.get('version')!r} is not {DUMP_VERSION}")
    restored: list[str] = []
    entries = 0
    while reader.peek() is not None:
        record = reader.take()
        if record.get("kind") != "session":
            raise reader.error("expected a session line")
        image = _structure(reader, record, SessionImage)
        counter = [0]
        write_image(store, image, _entries(reader, counter), replace=replace)
        restored.append(image.id)
        entries += counter[0]
        if progress is not None:
            progress(len(restored), image)
    return RestoreReport(tuple(restored), entries)


def _entries(reader: _Lines, counter: list[int]) -> Iterator[EntryImage]:
    while (record := reader.peek()) is not None and record.get("kind") == "entry":
        reader.take()
        counter[0] += 1
        yield _structure(reader, record, EntryImage)


def _structure(reader: _Lines, record: dict[str, Any], cls: type[Any]) -> Any:
    fields = {k: v for k, v in record.items() if k != "kind"}
    try:
        return converter.structure(fields, cls)
    except Exception as err:  # cattrs reports groups of errors: one line says enough
        raise reader.error(f"not a valid {cls.__name__} line") from err
