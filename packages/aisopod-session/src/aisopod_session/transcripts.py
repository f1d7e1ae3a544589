"""OpenClaw / pi transcripts: import (versions 1, 2 and 3) and export (version 3).

A transcript is a JSONL file: a `session` header line, then one entry per
line (`spec/pi-transcript.md`). `import_transcript` reads one into the store
as a session, upgrading older files on the way (version 1 entries get ids and
chained parents, and a compaction's `firstKeptEntryIndex` becomes
`firstKeptEntryId`; the `hookMessage` role of versions 1 and 2 becomes
`custom`). Everything else is kept verbatim: unknown fields, unknown entry
types, the tree, the timestamps, the numbers. `export_transcript` writes a
session back as a version 3 file, so `export(import(file))` gives back every
entry. `import_openclaw_agent` imports a whole OpenClaw agent folder:
`sessions.json` with its keys and origins, and every transcript beside it.

    from aisopod_session import open_store
    from aisopod_session.transcripts import export_transcript, import_openclaw_agent

    store = open_store("sqlite:///sessions.db")
    for result in import_openclaw_agent(store, "~/.openclaw/agents/main"):
        print(result.session.id, result.session.key, result.entries)
    export_transcript(store, result.session.id, "out.jsonl")

Imports stream: a file is read twice (once to check it and gather what the
session needs, once to write it in a single transaction), and only the map
from entry ids to positions is held in memory. Exports read a page of
entries at a time. A file the store cannot take whole raises a
`TranscriptError` naming the file and line, and nothing is written.

These functions are synchronous (they read and write files); with an
`AsyncSessionStore`, run them on a thread with its synchronous store:
`await asyncio.to_thread(import_transcript, store.sync, path)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeGuard

import attrs
import orjson

from aisopod_session._entries import holds_nul, iso_timestamp
from aisopod_session._errors import (
    InvalidPayload,
    PayloadTooLarge,
    SessionExists,
    SessionNotFound,
    TranscriptError,
)
from aisopod_session._model import Entry, Origin, Session, SessionStatus
from aisopod_session._validate import check_text, session_key
from aisopod_session.keys import normalize_agent_id, normalize_channel
from aisopod_session.transfer._images import PAGE, EntryImage, SessionImage, write_image
from aisopod_shared import InvalidInput, logger

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = [
    "Existing",
    "CURRENT_VERSION",
    "HEADER_METADATA_KEY",
    "OPENCLAW_METADATA_KEY",
    "ImportResult",
    "SkippedLine",
    "export_transcript",
    "import_openclaw_agent",
    "import_transcript",
]

CURRENT_VERSION: Final = 3
"""The transcript format version this module writes."""

HEADER_METADATA_KEY: Final = "transcript"
"""The session metadata key holding an imported file's header (all but `type` and `id`)."""

OPENCLAW_METADATA_KEY: Final = "openclaw"
"""The session metadata key holding what `sessions.json` said about an imported session."""

PathLike: TypeAlias = str | os.PathLike[str]

_BOM: Final = b"\xef\xbb\xbf"
_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
# orjson reads integers beyond 64 bits as floats, silently. Only a line with a
# run of 19 digits can hold one, so only such lines are parsed again exactly.
_LONG_DIGITS: Final = re.compile(rb"\d{19}")
_MAX_ID_LENGTH: Final = 256
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# OpenClaw files beside transcripts that are not sessions of their own: the
# pre-compaction twin of a session (same session id) and runtime traces.
_NOT_A_SESSION: Final = re.compile(
    r"\.checkpoint\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl$"
    r"|\.trajectory\.jsonl$",
    re.IGNORECASE,
)


# --- results ---------------------------------------------------------------------------


@attrs.frozen
class SkippedLine:
    """A line `skip_bad_lines` left out, and why."""

    line: int
    """1-based line number."""
    reason: str


@attrs.frozen
class ImportResult:
    """What importing one transcript did.

    `skipped` lists the lines left out (only with `skip_bad_lines`);
    `reparented` the lines of entries whose parent was such a line, which
    now hang from the nearest kept entry before it.
    """

    session: Session
    path: str
    version: int
    """The format version of the file (0 when the transcript file was missing)."""
    entries: int
    """Entries imported."""
    lines: int
    """Lines read, header and blank lines included."""
    skipped: tuple[SkippedLine, ...] = ()
    reparented: tuple[int, ...] = ()
    missing: bool = False
    """Whether `sessions.json` named a transcript that does not exist (the
    session was made empty, so the key keeps its session id and origin)."""
    existed: bool = False
    """Whether the session was already in the store and left as it was
    (`existing="skip"`); `session` is then the stored one."""


Existing = Literal["error", "skip", "replace"]
"""What an import does with a session the store already holds: refuse the whole
import (`SessionExists`), leave the stored one, or write the file's over it."""


# --- reading a transcript --------------------------------------------------------------


@attrs.frozen
class _Header:
    line: int
    session_id: str
    version: int
    fields: Mapping[str, Any]
    """The header but `type` and `id`: what export writes back."""
    timestamp: datetime | None


@attrs.frozen
class _Summary:
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


class _Reader:
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
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115
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
        self._time = self.header.timestamp or datetime.fromtimestamp(
            os.fstat(self._file.fileno()).st_mtime, UTC
        )

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def error(self, reason: str, *, whole_file: bool = False) -> TranscriptError:
        """A `TranscriptError` at the current line (or about the whole file)."""
        return TranscriptError(self.path, None if whole_file else self.line, reason)

    def summary(self) -> _Summary:
        """What this pass saw; call it once the entries are consumed."""
        return _Summary(
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
        if not _valid_id(session_id):
            raise self.error("the session header has no valid `id`")
        version = value.get("version", 1)
        if isinstance(version, bool) or version not in (1, 2, 3):
            raise self.error(f"unsupported transcript version {version!r} (this reads 1 to 3)")
        fields = {k: v for k, v in value.items() if k not in ("type", "id")}
        return _Header(self.line, session_id, version, fields, _parse_time(value.get("timestamp")))

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
        if not _valid_id(entry_id):
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
        kind = entry.pop("type")
        self.entries += 1
        seq = self.entries
        self._seqs[entry_id] = seq
        self._previous = seq
        when = _parse_time(entry.get("timestamp")) or self._time
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


def _valid_id(value: object) -> TypeGuard[str]:
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


def _parse_time(value: object) -> datetime | None:
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


def _scan(path: str, *, skip_bad_lines: bool) -> _Summary:
    """The first pass: check every line, learn what the session needs."""
    with _Reader(path, skip_bad_lines=skip_bad_lines) as reader:
        for _ in reader.images():
            pass
        return reader.summary()


def _second_pass(reader: _Reader, summary: _Summary) -> Iterator[EntryImage]:
    """The entries again, checked against the first pass (the file may have changed)."""
    if (reader.header.session_id, reader.header.version) != (
        summary.header.session_id,
        summary.header.version,
    ):
        raise reader.error("the file changed while it was imported", whole_file=True)
    yield from reader.images()
    if reader.entries != summary.entries:
        raise reader.error("the file changed while it was imported", whole_file=True)


# --- importing -------------------------------------------------------------------------


@attrs.frozen
class _Target:
    """Where an imported session goes and what it carries beyond its transcript."""

    agent_id: str
    key: str | None
    current: bool
    status: SessionStatus
    origin: Origin = attrs.Factory(Origin)
    metadata: Mapping[str, Any] = attrs.Factory(dict)
    title: str | None = None
    """A title to use when the transcript names none."""
    created_at: datetime | None = None
    """When the session began, should the transcript not say."""
    updated_at: datetime | None = None
    """The last activity known outside the transcript."""


def import_transcript(
    store: SessionStore,
    path: PathLike,
    *,
    agent_id: str | None = None,
    key: str | None = None,
    current: bool = True,
    skip_bad_lines: bool = False,
    existing: Existing = "error",
) -> ImportResult:
    """Import one transcript file (version 1, 2 or 3) as a session, in one transaction.

    The session id is the header's `id`; the leaf is the file's last entry.
    With `key`, the session is the key's (its current one unless `current`
    is false, then it is archived); without, it has no key. The agent is
    `agent_id`, else the key's, else the store's scope, else `main`. The
    header's fields are kept in `metadata["transcript"]` for export.

    With `skip_bad_lines`, lines that cannot be read as entries (not JSON, a
    truncated last line, no `type` or `id`, a NUL character) are left out and
    reported; an entry whose parent was such a line hangs from the nearest
    kept entry before that line. A file whose entries contradict each other
    (a duplicate id, a parent that is nowhere) is refused either way.

    Raises:
        TranscriptError: for a file that is not a transcript, a bad line, or an
            entry the store refuses (over its size limit); nothing is written.
        SessionExists: when the store already holds a session with this id (and
            `existing` is "error").
        OSError: when the file cannot be read.
    """
    agent, stored_key = _owner(store, agent_id, key)
    status: SessionStatus = "archived" if stored_key is not None and not current else "active"
    target = _Target(agent, stored_key, current and stored_key is not None, status)
    summary = _scan(os.fspath(path), skip_bad_lines=skip_bad_lines)
    stored = _stored(store, summary.header.session_id)
    if stored is not None and existing == "skip":
        return _left_alone(stored, summary)
    return _write(store, summary, target, skip_bad_lines, replace=existing == "replace")


def _stored(store: SessionStore, session_id: str) -> Session | None:
    try:
        return store.get(session_id)
    except SessionNotFound:
        return None


def _left_alone(session: Session, summary: _Summary) -> ImportResult:
    return ImportResult(
        session, summary.path, summary.header.version, 0, summary.lines, existed=True
    )


def _owner(store: SessionStore, agent_id: str | None, key: str | None) -> tuple[str, str | None]:
    """The agent and stored key an import goes to."""
    agent = (
        normalize_agent_id(check_text(agent_id, "agent_id", max_length=64))
        if agent_id is not None
        else store.agent_id
    )
    if key is None:
        return agent or normalize_agent_id(None), None
    stored, key_agent = session_key(key, agent)
    if agent_id is not None and key_agent != agent:
        raise InvalidInput(f"the key belongs to agent {key_agent!r}, not {agent!r}", field="key")
    return key_agent, stored


def _write(
    store: SessionStore,
    summary: _Summary,
    target: _Target,
    skip_bad_lines: bool,
    *,
    replace: bool = False,
) -> ImportResult:
    """The second pass: write the session and its entries in one transaction."""
    header = summary.header
    created = header.timestamp or summary.first_at or target.created_at or _now()
    active = max(summary.last_at or created, created)
    image = SessionImage(
        id=header.session_id,
        agent_id=target.agent_id,
        key=target.key,
        status=target.status,
        title=summary.title or target.title,
        created_at=created,
        updated_at=max(active, target.updated_at or active),
        active_at=active,
        metadata={**target.metadata, HEADER_METADATA_KEY: dict(header.fields)},
        origin=target.origin,
        fork_parent=None,
        leaf_seq=summary.entries,
        version=1,
        current=target.current,
    )
    with _Reader(summary.path, skip_bad_lines=skip_bad_lines) as reader:
        try:
            session = write_image(store, image, _second_pass(reader, summary), replace=replace)
        except (InvalidPayload, PayloadTooLarge) as err:
            # The store refused the entry the reader handed it last.
            raise reader.error(err.reason) from err
    logger.info(
        "imported session {} (transcript v{}): {} entries, {} lines skipped",
        session.id,
        header.version,
        summary.entries,
        len(summary.skipped),
    )
    return ImportResult(
        session=session,
        path=summary.path,
        version=header.version,
        entries=summary.entries,
        lines=summary.lines,
        skipped=summary.skipped,
        reparented=summary.reparented,
    )


def _now() -> datetime:
    return datetime.now(UTC)


# --- exporting -------------------------------------------------------------------------


def export_transcript(store: SessionStore, session_id: str, out: PathLike | IO[str]) -> int:
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
        "version": CURRENT_VERSION,
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
    after = 0
    previous: tuple[int, str] | None = None
    while True:
        page = store.history(session_id, after=after, limit=PAGE)
        ids = _parent_ids(store, session_id, page.entries, previous)
        for entry in page.entries:
            line: dict[str, Any] = {
                "type": entry.type,
                "id": entry.id,
                "parentId": ids[entry.parent_seq] if entry.parent_seq is not None else None,
                "timestamp": entry.payload.get("timestamp", iso_timestamp(entry.created_at)),
            }
            for name, value in entry.payload.items():
                if name not in line:
                    line[name] = value
            yield _json_line(line)
        if page.entries:
            last = page.entries[-1]
            previous = (last.seq, last.id)
        if page.cursor is None:
            return
        after = page.cursor


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


# --- OpenClaw agent folders ------------------------------------------------------------


@attrs.frozen
class _Planned:
    """One session a folder import will write."""

    path: str
    target: _Target
    session_id: str | None = None
    """The id `sessions.json` gives it (the only one, when the file is missing)."""
    missing: bool = False


def import_openclaw_agent(
    store: SessionStore,
    folder: PathLike,
    *,
    skip_bad_lines: bool = False,
    existing: Existing = "error",
) -> list[ImportResult]:
    """Import an OpenClaw agent folder: `<agentId>/sessions/sessions.json` and transcripts.

    The agent id is the folder's name, normalised (`folder` may also be its
    `sessions/` folder). Each key of `sessions.json` gets its session as its
    current one, with the origin the map records (label, channel, account,
    chat type, peer, thread; OpenClaw's own `origin` object is kept whole in
    `origin.extra`) and the rest of the map's entry in `metadata["openclaw"]`.
    Keys without the `agent:` prefix (older OpenClaw versions) become request
    keys of the agent; a key naming another agent stays that agent's. When two
    keys name one key after normalising, the most recently updated is current
    and the other is archived; when two keys name one transcript, it is
    imported once, for the most recent, and the others are kept in its
    metadata. A key whose transcript is missing gets an empty session.
    Transcripts the map does not name are imported as archived sessions
    without a key; OpenClaw's pre-compaction twins (`*.checkpoint.<uuid>.jsonl`)
    and traces (`*.trajectory.jsonl`) are not sessions and are left alone, as
    are the `*.jsonl.reset.*` / `*.jsonl.deleted.*` files of reset and deleted
    sessions. `skip_bad_lines` applies to every transcript.

    Every file is checked before anything is written; each session is then
    written in a transaction of its own.

    Raises:
        TranscriptError: for a bad `sessions.json` or transcript (nothing is written).
        SessionExists: when the store already holds one of the sessions (and
            `existing` is "error"; nothing is written).
    """
    agent_dir, sessions_dir = _agent_folders(Path(folder).expanduser())
    agent = normalize_agent_id(agent_dir.name)
    plan = _plan_folder(sessions_dir, agent)
    summaries = _check_folder(store, plan, skip_bad_lines=skip_bad_lines)
    ids = [s.header.session_id if s else i.session_id for i, s in zip(plan, summaries, strict=True)]
    held = {sid: _stored(store, sid) for sid in ids if sid is not None}
    if existing == "error":
        for session_id, found in held.items():
            if found is not None:
                raise SessionExists(session_id)  # before anything is written
    results = []
    for item, summary, maybe_id in zip(plan, summaries, ids, strict=True):
        stored = held.get(maybe_id) if maybe_id is not None else None
        if stored is not None and existing == "skip":
            results.append(
                _left_alone(stored, summary)
                if summary
                else ImportResult(stored, item.path, 0, 0, 0, missing=True, existed=True)
            )
        elif summary is None:
            results.append(_write_empty(store, item, replace=existing == "replace"))
        else:
            replace = existing == "replace"
            results.append(_write(store, summary, item.target, skip_bad_lines, replace=replace))
    return results


def _agent_folders(folder: Path) -> tuple[Path, Path]:
    """The agent folder and its `sessions` folder (either may be given)."""
    if (folder / "sessions").is_dir():
        return folder, folder / "sessions"
    if (folder / "sessions.json").is_file() and folder.name == "sessions":
        return folder.parent, folder
    raise TranscriptError(str(folder), None, "not an OpenClaw agent folder (no sessions/)")


def _plan_folder(sessions_dir: Path, agent: str) -> list[_Planned]:
    """The sessions to write: the map's, most recent first deciding bindings, then the rest."""
    entries = _read_session_map(sessions_dir / "sessions.json", agent)
    # The most recently updated entry wins a key's binding and a shared file
    # (the sort is stable: ties go to the first in the map).
    ranked = sorted(entries, key=lambda e: (e.updated_at or _EPOCH).timestamp(), reverse=True)
    owners: dict[Path, _MapEntry] = {}
    aliases: dict[Path, list[_MapEntry]] = {}
    bound: set[str] = set()
    current: set[_MapEntry] = set()
    for entry in ranked:
        if entry.file in owners:
            aliases.setdefault(entry.file, []).append(entry)
            continue
        owners[entry.file] = entry
        if entry.key not in bound:
            bound.add(entry.key)
            current.add(entry)
    plan = [
        _planned_for_key(entry, entry in current, aliases.get(entry.file, []))
        for entry in entries
        if owners[entry.file] is entry
    ]
    for path in sorted(sessions_dir.glob("*.jsonl")):
        if path not in owners and path.is_file() and not _NOT_A_SESSION.search(path.name):
            plan.append(_Planned(str(path), _Target(agent, None, False, "archived")))
    return plan


@attrs.frozen(eq=False)
class _MapEntry:
    """One key of `sessions.json`, read."""

    original_key: str
    key: str
    agent_id: str
    session_id: str
    file: Path
    updated_at: datetime | None
    fields: Mapping[str, Any]


def _read_session_map(path: Path, agent: str) -> list[_MapEntry]:
    """`sessions.json`: session key -> `{sessionId, updatedAt, ...}` (absent: no keys)."""
    if not path.is_file():
        return []
    where = str(path)
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as err:
        raise TranscriptError(where, None, f"not JSON ({err})") from err
    if not isinstance(data, dict):
        raise TranscriptError(where, None, "not a map of session keys")
    entries = []
    for original, fields in data.items():
        if not isinstance(fields, dict) or not _valid_id(fields.get("sessionId")):
            raise TranscriptError(where, None, f"the entry of {original!r} has no `sessionId`")
        try:
            stored, key_agent = session_key(original, agent)
        except InvalidInput as err:
            raise TranscriptError(where, None, f"{original!r} is not a session key") from err
        entries.append(
            _MapEntry(
                original_key=original,
                key=stored,
                agent_id=key_agent,
                session_id=fields["sessionId"],
                file=path.parent / _transcript_name(fields),
                updated_at=_parse_millis(fields.get("updatedAt")),
                fields=fields,
            )
        )
    return entries


def _transcript_name(fields: Mapping[str, Any]) -> str:
    """The transcript's file name: `sessionFile`'s (paths from another machine are
    reduced to their name: transcripts sit directly in `sessions/`), else `<id>.jsonl`."""
    named = fields.get("sessionFile")
    if isinstance(named, str) and named.strip():
        name = Path(named.strip().replace("\\", "/")).name
        if name not in ("", ".", ".."):
            return name
    return f"{fields['sessionId']}.jsonl"


def _parse_millis(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return _parse_time(value)


def _planned_for_key(entry: _MapEntry, current: bool, aliases: list[_MapEntry]) -> _Planned:
    fields = entry.fields
    openclaw: dict[str, Any] = {
        "key": entry.original_key,
        "entry": {k: v for k, v in fields.items() if k not in ("sessionId", "sessionFile")},
    }
    if aliases:
        openclaw["aliases"] = {alias.original_key: dict(alias.fields) for alias in aliases}
    target = _Target(
        agent_id=entry.agent_id,
        key=entry.key,
        current=current,
        status="active" if current else "archived",
        origin=_origin_of(fields),
        metadata={OPENCLAW_METADATA_KEY: openclaw},
        title=_text(fields.get("label")),
        created_at=_parse_millis(fields.get("sessionStartedAt")) or entry.updated_at,
        updated_at=entry.updated_at,
    )
    missing = not entry.file.is_file()
    return _Planned(str(entry.file), target, entry.session_id, missing)


def _origin_of(fields: Mapping[str, Any]) -> Origin:
    """Where an OpenClaw session came from, from its `sessions.json` entry.

    Each part takes the first of the places OpenClaw records it: the entry's
    own fields, its `origin`, its delivery context, its last delivery target.
    """
    origin = _object(fields.get("origin"))
    delivery = _object(fields.get("deliveryContext"))
    channel = _text(
        fields.get("channel"),
        origin.get("provider"),
        delivery.get("channel"),
        fields.get("lastChannel"),
    )
    return Origin(
        channel=normalize_channel(channel) if channel else None,
        account=_text(
            origin.get("accountId"), delivery.get("accountId"), fields.get("lastAccountId")
        ),
        chat_type=_text(fields.get("chatType"), origin.get("chatType")),
        peer=_peer(fields, origin, channel),
        thread=_text(origin.get("threadId"), delivery.get("threadId"), fields.get("lastThreadId")),
        label=_text(fields.get("label"), origin.get("label"), fields.get("displayName")),
        extra=dict(origin),
    )


def _peer(fields: Mapping[str, Any], origin: Mapping[str, Any], channel: str | None) -> str | None:
    """The group's id, else the person's: OpenClaw writes addresses as `<channel>:<id>`."""
    peer = _text(fields.get("groupId"), origin.get("nativeDirectUserId"), origin.get("from"))
    prefix = f"{channel}:" if channel else None
    if peer is not None and prefix is not None and peer.lower().startswith(prefix.lower()):
        peer = peer[len(prefix) :] or None
    return peer


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _title(name: str) -> str | None:
    """A session name fit for a title: trimmed, not empty, at most 200 characters, no NUL."""
    title = name.replace("\x00", "").strip()[:200]
    return title or None


def _text(*values: object) -> str | None:
    """The first value that is a non-empty string (or a number, as thread ids can be)."""
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _check_folder(
    store: SessionStore, plan: list[_Planned], *, skip_bad_lines: bool
) -> list[_Summary | None]:
    """Read every transcript once and check the whole folder before writing anything."""
    summaries: list[_Summary | None] = []
    seen: dict[str, str] = {}
    for item in plan:
        summary = None if item.missing else _scan(item.path, skip_bad_lines=skip_bad_lines)
        session_id = summary.header.session_id if summary else item.session_id
        assert session_id is not None
        if session_id in seen:
            line = summary.header.line if summary else None
            raise TranscriptError(
                item.path, line, f"session {session_id!r} is also in {seen[session_id]}"
            )
        seen[session_id] = item.path
        summaries.append(summary)
    return summaries


def _write_empty(store: SessionStore, item: _Planned, *, replace: bool = False) -> ImportResult:
    """The session of a key whose transcript is missing: no entries, its id and origin kept."""
    target = item.target
    assert item.session_id is not None
    created = target.created_at or target.updated_at or _now()
    image = SessionImage(
        id=item.session_id,
        agent_id=target.agent_id,
        key=target.key,
        status=target.status,
        title=target.title,
        created_at=created,
        updated_at=max(created, target.updated_at or created),
        active_at=created,
        metadata=dict(target.metadata),
        origin=target.origin,
        fork_parent=None,
        leaf_seq=0,
        version=1,
        current=target.current,
    )
    session = write_image(store, image, (), replace=replace)
    return ImportResult(session, item.path, 0, 0, 0, missing=True)
