"""Reading OpenClaw / pi transcript files: versions 1, 2 and 3, upgraded to 3 on the way.

A transcript is a JSONL file: a `session` header line, then one entry per
line (`spec/pi-transcript.md`), plain or zstd-compressed (OpenClaw's
`*.jsonl.zst` archives, decompressed as they stream by `_compressed`).
`TranscriptReader` makes one pass over a file: it checks the header, then
yields each entry as the `EntryImage` the store writes, upgraded from older
versions (version 1 entries get ids and chained parents, and a compaction's
`firstKeptEntryIndex` becomes `firstKeptEntryId`; the `hookMessage` role of
versions 1 and 2 becomes `custom`). Everything else is kept verbatim: unknown fields, unknown entry
types, the tree, the timestamps, the numbers.

An import reads a file twice with this same reader (`_transcript_import`),
so the entries it writes are exactly the entries it checked. Only the map
from entry ids to positions is held in memory. A line that cannot be read
raises a `TranscriptError` naming the file and the line (or, with
`skip_bad_lines`, is left out and reported as a `SkippedLine`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final, TypeGuard

import attrs
import orjson

from aisopod_session._entries import holds_nul
from aisopod_session._errors import TranscriptError
from aisopod_session._state import stored_entry_type
from aisopod_session.transfer._compressed import CompressedFileError, open_plain
from aisopod_session.transfer._images import EntryImage

__all__ = ["SkippedLine"]

_BOM: Final = b"\xef\xbb\xbf"
_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
# orjson reads integers beyond 64 bits as floats, silently. Only a line with a
# run of 19 digits can hold one, so only such lines are parsed again exactly.
_LONG_DIGITS: Final = re.compile(rb"\d{19}")
_MAX_ID_LENGTH: Final = 256


@attrs.frozen
class SkippedLine:
    """A line `skip_bad_lines` left out, and why."""

    line: int
    """1-based line number."""
    reason: str


@attrs.frozen
class _Header:
    line: int
    session_id: str
    version: int
    fields: Mapping[str, Any]
    """The header but `type` and `id`: what export writes back."""
    timestamp: datetime | None


@attrs.frozen
class Summary:
    """What the first pass learned: all the session needs before its entries are written."""

    path: str
    header: _Header
    entries: int
    lines: int
    first_at: datetime | None
    last_at: datetime | None
    title: str | None
    skipped: tuple[SkippedLine, ...]
    reparented: tuple[int, ...]


class TranscriptReader:
    """One pass over a transcript: its header, then its entries upgraded to version 3.

    Both passes of an import run this same reader, so the entries written are
    exactly the entries checked. Memory: the map from entry ids to seqs (and,
    for version 1 files, from line positions to ids), nothing more.
    """

    def __init__(self, path: str, *, skip_bad_lines: bool) -> None:
        self.path = path
        self.skip_bad_lines = skip_bad_lines
        self.line = 0
        """The 1-based number of the line being read."""
        self.skipped: list[SkippedLine] = []
        self.reparented: list[int] = []
        self.entries = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self.title: str | None = None
        # Open for as long as the pass runs: `close()` (or `with`) ends it.
        self._modified = os.stat(path).st_mtime
        self._file: IO[bytes] = open_plain(path)
        self._lines = self._numbered_lines()
        self._seqs: dict[str, int] = {}
        self._v1_ids: dict[int, str] = {}
        self._previous: int | None = None
        self._fallback_parent: int | None = None
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise
        # Entries without a usable time take the one before them: the header's,
        # else the file's modification time (the same in both passes).
        self._time = self.header.timestamp or datetime.fromtimestamp(self._modified, UTC)

    def __enter__(self) -> TranscriptReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def error(self, reason: str, *, whole_file: bool = False) -> TranscriptError:
        """A `TranscriptError` at the current line (or about the whole file)."""
        return TranscriptError(self.path, None if whole_file else self.line, reason)

    def summary(self) -> Summary:
        """What this pass saw; call it once the entries are consumed."""
        return Summary(
            path=self.path,
            header=self.header,
            entries=self.entries,
            lines=self.line,
            first_at=self.first_at,
            last_at=self.last_at,
            title=self.title,
            skipped=tuple(self.skipped),
            reparented=tuple(self.reparented),
        )

    # --- lines ---

    def _numbered_lines(self) -> Iterator[tuple[bytes, bool]]:
        """Non-blank lines (without their line ending) and whether each ended in a newline."""
        try:
            yield from self._lines_of_file()
        except CompressedFileError as err:
            raise TranscriptError(self.path, self.line + 1, str(err)) from err

    def _lines_of_file(self) -> Iterator[tuple[bytes, bool]]:
        for number, raw in enumerate(self._file, start=1):
            self.line = number
            text = raw.rstrip(b"\r\n")
            if number == 1 and text.startswith(_BOM):
                text = text[len(_BOM) :]
            if text.strip():
                yield text, raw.endswith(b"\n")

    def _parse(self, text: bytes, complete: bool) -> Any:
        """The line's JSON value; `_BadLine` when it has none."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            if not complete:
                return _BadLine("truncated last line (no newline, not JSON)")
            return _BadLine(f"not JSON ({err})")
        if _LONG_DIGITS.search(text) and _has_huge_int(json.loads(text)):
            return _BadLine("an integer beyond 64 bits, which cannot be kept exactly")
        return value

    # --- the header ---

    def _read_header(self) -> _Header:
        first = next(self._lines, None)
        if first is None:
            raise self.error("an empty file, not a transcript", whole_file=True)
        value = self._parse(*first)
        if isinstance(value, _BadLine) or not isinstance(value, dict):
            raise self.error("not a transcript: the first line is not a JSON object")
        if value.get("type") != "session":
            raise self.error("not a transcript: the first line is not a `session` header")
        session_id = value.get("id")
        if not valid_id(session_id):
            raise self.error("the session header has no valid `id`")
        version = value.get("version", 1)
        if isinstance(version, bool) or version not in (1, 2, 3):
            raise self.error(f"unsupported transcript version {version!r} (this reads 1 to 3)")
        fields = {k: v for k, v in value.items() if k not in ("type", "id")}
        return _Header(self.line, session_id, version, fields, parse_time(value.get("timestamp")))

    # --- entries ---

    def images(self) -> Iterator[EntryImage]:
        """Every entry, upgraded, numbered and linked, as the store writes it."""
        for position, (text, complete) in enumerate(self._lines, start=1):
            value = self._parse(text, complete)
            if isinstance(value, _BadLine):
                self._bad(value.reason)
                continue
            image = self._entry(value, position, maybe_nul=b"\\u0000" in text)
            if image is not None:
                yield image

    def _bad(self, reason: str) -> None:
        """Skip the current line when allowed, else raise."""
        if not self.skip_bad_lines:
            raise self.error(reason)
        self.skipped.append(SkippedLine(self.line, reason))
        # An entry that hung from this line will hang from the entry before it.
        self._fallback_parent = self._previous

    def _entry(self, entry: Any, position: int, *, maybe_nul: bool) -> EntryImage | None:
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or not kind:
            self._bad("not a transcript entry (no `type`)")
            return None
        if kind == "session":
            self._bad("a second `session` header")
            return None
        problem = _storage_problem(kind, entry, maybe_nul=maybe_nul)
        if problem is not None:
            self._bad(problem)
            return None
        if self.header.version == 1:
            entry_id, parent = self._v1_links(entry, position)
        else:
            links = self._links(entry)
            if links is None:
                return None
            entry_id, parent = links
        if self.header.version < 3:
            _rename_hook_role(entry)
        return self._accept(entry, entry_id, parent)

    def _v1_links(self, entry: dict[str, Any], position: int) -> tuple[str, int | None]:
        """Version 1: an id from the line's position, the entry before as parent.

        Positions count the file's non-blank lines with the header as 0, the
        index a version 1 `firstKeptEntryIndex` uses (pi drops blank lines too).
        """
        entry.pop("id", None)
        entry.pop("parentId", None)
        entry_id = self._v1_id(position)
        self._v1_ids[position] = entry_id
        if entry.get("type") == "compaction":
            _upgrade_first_kept(entry, self._v1_ids)
        return entry_id, self._previous

    def _v1_id(self, position: int) -> str:
        """8 hex characters hashed from the session id and the line's position: the
        same on every import of the file. A clash in the file (rare) hashes again."""
        attempt = 0
        while True:
            seed = f"{self.header.session_id}\n{position}\n{attempt}"
            candidate = hashlib.sha256(seed.encode()).hexdigest()[:8]
            if candidate not in self._seqs:
                return candidate
            attempt += 1

    def _links(self, entry: dict[str, Any]) -> tuple[str, int | None] | None:
        """Versions 2 and 3: the entry's own id and the seq of its parent."""
        entry_id = entry.pop("id", None)
        parent_id = entry.pop("parentId", None)
        if not valid_id(entry_id):
            self._bad("an entry without a valid `id`")
            return None
        if parent_id is not None and not isinstance(parent_id, str):
            self._bad("`parentId` is neither a string nor null")
            return None
        if entry_id in self._seqs:
            raise self.error(f"duplicate entry id {entry_id!r}")
        return entry_id, self._parent_seq(parent_id)

    def _parent_seq(self, parent_id: str | None) -> int | None:
        if parent_id is None:
            return None
        seq = self._seqs.get(parent_id)
        if seq is not None:
            return seq
        if self.skipped:
            # Its parent may be a line that was skipped: hang it from the entry
            # before the last skipped line, so the branch stays on the tree.
            self.reparented.append(self.line)
            return self._fallback_parent
        raise self.error(f"the parent {parent_id!r} is not an earlier entry")

    def _accept(self, entry: dict[str, Any], entry_id: str, parent: int | None) -> EntryImage:
        kind = stored_entry_type(entry.pop("type"), entry)
        self.entries += 1
        seq = self.entries
        self._seqs[entry_id] = seq
        self._previous = seq
        when = parse_time(entry.get("timestamp")) or self._time
        self._time = when
        self.first_at = self.first_at or when
        self.last_at = max(self.last_at or when, when)
        if kind == "session_info" and isinstance(entry.get("name"), str):
            self.title = _title(entry["name"])
        # The payload is the entry less `type`, `id` and `parentId`; its ISO
        # `timestamp` stays in it verbatim, so export writes the same string.
        return EntryImage(seq, entry_id, parent, kind, entry, when)


@attrs.frozen
class _BadLine:
    reason: str


def valid_id(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and len(value) <= _MAX_ID_LENGTH
        and "\x00" not in value
    )


def _has_huge_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not _INT_MIN <= value <= _UINT_MAX
    if isinstance(value, dict):
        return any(_has_huge_int(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_huge_int(item) for item in value)
    return False


def _storage_problem(kind: str, entry: dict[str, Any], *, maybe_nul: bool) -> str | None:
    """Why the store would refuse this entry, found before any transaction starts.

    `maybe_nul`: whether the line holds a `\\u0000` escape, the only way JSON
    spells NUL (most lines do not, and are not serialized again to look).
    """
    if kind == "message":
        message = entry.get("message")
        if not isinstance(message, dict):
            return "a `message` entry without a `message` object"
        if "role" in message and not isinstance(message["role"], str):
            return "a message whose `role` is not a string"
    # The store refuses NUL characters (PostgreSQL cannot keep them); it looks
    # for the escape in the serialized payload, and so does this check.
    if maybe_nul and holds_nul(orjson.dumps(entry)):
        return "a NUL character, which cannot be stored"
    return None


def _rename_hook_role(entry: dict[str, Any]) -> None:
    """Version 3 renamed the `hookMessage` role `custom`."""
    message = entry.get("message") if entry.get("type") == "message" else None
    if isinstance(message, dict) and message.get("role") == "hookMessage":
        message["role"] = "custom"


def _upgrade_first_kept(entry: dict[str, Any], ids: Mapping[int, str]) -> None:
    """`firstKeptEntryIndex` (a line position, header = 0) -> `firstKeptEntryId`.

    As pi does it: the index goes; the id comes only when the index names an
    entry already read (not the header, not a skipped line).
    """
    index = entry.get("firstKeptEntryIndex")
    if isinstance(index, bool) or not isinstance(index, int):
        return
    target = ids.get(index)
    upgraded: dict[str, Any] = {}
    for name, value in entry.items():
        if name == "firstKeptEntryIndex":
            if target is not None:
                upgraded["firstKeptEntryId"] = target
        elif name != "firstKeptEntryId" or target is None:
            upgraded[name] = value
    entry.clear()
    entry.update(upgraded)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 string (or Unix milliseconds) as an aware datetime; `None` if unreadable."""
    try:
        if isinstance(value, str):
            when = datetime.fromisoformat(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            when = datetime.fromtimestamp(value / 1000, UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _title(name: str) -> str | None:
    """A session name fit for a title: trimmed, not empty, at most 200 characters, no NUL."""
    title = name.replace("\x00", "").strip()[:200]
    return title or None
