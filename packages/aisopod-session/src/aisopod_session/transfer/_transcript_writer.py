"""Exporting a session as an OpenClaw / pi transcript file (version 3).

`export_transcript` writes a session as a version 3 JSONL transcript
(`spec/pi-transcript.md`): a `session` header carrying the fields an import
kept (`metadata["transcript"]`), then every entry in seq order with its
`type`, `id`, `parentId` and `timestamp`, then its payload verbatim, so
`export(import(file))` gives back every entry, key for key. Memory holds one
page of entries; a path is written whole or not at all.

This is synchronous (it writes files); with an `AsyncSessionStore`, run it on
a thread with its synchronous store:
`await asyncio.to_thread(export_transcript, store.sync, session_id, path)`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from aisopod_session._entries import iso_timestamp
from aisopod_session._model import Entry, Session
from aisopod_session._state import transcript_entry_type
from aisopod_session.transfer._images import entry_pages
from aisopod_session.transfer._transcript_import import HEADER_METADATA_KEY
from aisopod_shared import logger

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["TRANSCRIPT_VERSION", "export_transcript"]

TRANSCRIPT_VERSION: Final = 3
"""The transcript format version this module writes."""


def export_transcript(
    store: SessionStore, session_id: str, out: str | os.PathLike[str] | IO[str]
) -> int:
    """Write a session as a version 3 transcript; return the number of entries written.

    `out` is a text file open for writing, or a path (written whole or not at
    all: to a temporary file, then renamed; readable by its owner only, like
    the store's own files). The header carries the fields an
    import kept (`cwd`, `parentSession`, ...). Entries follow in seq order
    with `type`, `id`, `parentId` and `timestamp` (the imported one, else the
    entry's `created_at`), then their payload. Memory holds one page of
    entries: a parent is usually the entry just before, and the others are
    looked up a page at a time.

    Raises:
        SessionNotFound: when there is no such session.
    """
    session = store.get(session_id)
    if not isinstance(out, str | os.PathLike):
        return _write_transcript(store, session, out)
    target = Path(out)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            count = _write_transcript(store, session, file)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


def _write_transcript(store: SessionStore, session: Session, out: IO[str]) -> int:
    out.write(_json_line(_export_header(session)))
    count = 0
    for line in _export_lines(store, session.id):
        out.write(line)
        count += 1
    logger.info("exported session {}: {} entries", session.id, count)
    return count


def _json_line(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value).decode() + "\n"


def _export_header(session: Session) -> dict[str, Any]:
    kept = session.metadata.get(HEADER_METADATA_KEY)
    fields = dict(kept) if isinstance(kept, Mapping) else {}
    for written_here in ("type", "id", "version"):
        fields.pop(written_here, None)
    header: dict[str, Any] = {
        "type": "session",
        "version": TRANSCRIPT_VERSION,
        "id": session.id,
        "timestamp": fields.pop("timestamp", iso_timestamp(session.created_at)),
        "cwd": fields.pop("cwd", ""),
    }
    # Older files call the fork's source `branchedFrom`; version 3 says `parentSession`.
    if "branchedFrom" in fields and "parentSession" not in fields:
        header["parentSession"] = fields.pop("branchedFrom")
    header.update(fields)
    return header


def _export_lines(store: SessionStore, session_id: str) -> Iterator[str]:
    """Each entry as a JSONL line, a page at a time."""
    previous: tuple[int, str] | None = None
    for page in entry_pages(store, session_id):
        ids = _parent_ids(store, session_id, page, previous)
        for entry in page:
            line: dict[str, Any] = {
                "type": transcript_entry_type(entry.type),
                "id": entry.id,
                "parentId": ids[entry.parent_seq] if entry.parent_seq is not None else None,
                "timestamp": entry.payload.get("timestamp", iso_timestamp(entry.created_at)),
            }
            for name, value in entry.payload.items():
                if name not in line:
                    line[name] = value
            yield _json_line(line)
        if page:
            previous = (page[-1].seq, page[-1].id)


def _parent_ids(
    store: SessionStore,
    session_id: str,
    entries: Sequence[Entry],
    previous: tuple[int, str] | None,
) -> dict[int, str]:
    """seq -> id for the parents of a page's entries: from the page itself and the
    entry before it, and from the store for the few that branch off further back."""
    ids = {entry.seq: entry.id for entry in entries}
    if previous is not None:
        ids[previous[0]] = previous[1]
    far = sorted({e.parent_seq for e in entries if e.parent_seq is not None} - ids.keys())
    if far:
        ids.update(store.entry_ids(session_id, far))
    return ids
