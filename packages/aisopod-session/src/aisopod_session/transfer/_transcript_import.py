"""Importing one OpenClaw / pi transcript file into a store as a session.

`import_transcript` reads a transcript (versions 1, 2 and 3, upgraded on the
way by `_transcript_reader`) into the store as one session, whose id is the
header's. The header's fields are kept in `metadata["transcript"]` for export,
so exporting the imported session gives back every entry.

Imports stream: a file is read twice (once to check it and gather what the
session needs, once to write it in a single transaction), and only the map
from entry ids to positions is held in memory. A file the store cannot take
whole raises a `TranscriptError` naming the file and line, and nothing is
written.

This is synchronous (it reads files); with an `AsyncSessionStore`, run it on
a thread with its synchronous store:
`await asyncio.to_thread(import_transcript, store.sync, path)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from aisopod_session._errors import InvalidPayload, PayloadTooLarge, SessionNotFound
from aisopod_session._model import Origin, Session, SessionStatus
from aisopod_session._validate import check_text, session_key
from aisopod_session.keys import normalize_agent_id
from aisopod_session.transfer._images import (
    EntryCount,
    EntryImage,
    SessionImage,
    counted,
    write_image,
    write_unless_there,
)
from aisopod_session.transfer._transcript_reader import SkippedLine, Summary, TranscriptReader
from aisopod_shared import InvalidInput, logger

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["HEADER_METADATA_KEY", "Existing", "ImportResult", "import_transcript"]

HEADER_METADATA_KEY: Final = "transcript"
"""The session metadata key holding an imported file's header (all but `type` and `id`)."""


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


@attrs.frozen
class ImportTarget:
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

    def image(
        self,
        session_id: str,
        *,
        created: datetime,
        active: datetime,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        leaf_seq: int = 0,
    ) -> SessionImage:
        """The session to write here: `title` (else the target's), the target's
        metadata updated with `metadata`, last updated when last active unless
        the target knows of later activity."""
        return SessionImage(
            id=session_id,
            agent_id=self.agent_id,
            key=self.key,
            status=self.status,
            title=title or self.title,
            created_at=created,
            updated_at=max(active, self.updated_at or active),
            active_at=active,
            metadata={**self.metadata, **(metadata or {})},
            origin=self.origin,
            fork_parent=None,
            leaf_seq=leaf_seq,
            version=1,
            current=self.current,
        )


def scan(path: str, *, skip_bad_lines: bool) -> Summary:
    """The first pass: check every line, learn what the session needs."""
    with TranscriptReader(path, skip_bad_lines=skip_bad_lines) as reader:
        for _ in reader.images():
            pass
        return reader.summary()


def header_id(path: str) -> str:
    """The session id a transcript's header gives (only the header is read)."""
    with TranscriptReader(path, skip_bad_lines=False) as reader:
        return reader.header.session_id


def _second_pass(reader: TranscriptReader, summary: Summary) -> Iterator[EntryImage]:
    """The entries again, checked against the first pass (the file may have changed)."""
    if (reader.header.session_id, reader.header.version) != (
        summary.header.session_id,
        summary.header.version,
    ):
        raise reader.error("the file changed while it was imported", whole_file=True)
    yield from reader.images()
    if reader.entries != summary.entries:
        raise reader.error("the file changed while it was imported", whole_file=True)


def import_transcript(
    store: SessionStore,
    path: str | os.PathLike[str],
    *,
    agent_id: str | None = None,
    key: str | None = None,
    current: bool = True,
    skip_bad_lines: bool = False,
    existing: Existing = "error",
    on_entries: EntryCount | None = None,
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
    target = ImportTarget(agent, stored_key, current and stored_key is not None, status)
    summary = scan(os.fspath(path), skip_bad_lines=skip_bad_lines)
    stored = stored_session(store, summary.header.session_id)
    if stored is not None and existing == "skip":
        return left_alone(stored, summary)
    return write_import(
        store, summary, target, skip_bad_lines, existing=existing, on_entries=on_entries
    )


def stored_session(store: SessionStore, session_id: str) -> Session | None:
    try:
        return store.get(session_id)
    except SessionNotFound:
        return None


def left_alone(session: Session, summary: Summary) -> ImportResult:
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


def write_import(
    store: SessionStore,
    summary: Summary,
    target: ImportTarget,
    skip_bad_lines: bool,
    *,
    existing: Existing = "error",
    on_entries: EntryCount | None = None,
) -> ImportResult:
    """The second pass: write the session and its entries in one transaction
    (with `existing="skip"`, none when the session is there by then)."""
    header = summary.header
    created = header.timestamp or summary.first_at or target.created_at or import_time()
    active = max(summary.last_at or created, created)
    image = target.image(
        header.session_id,
        created=created,
        active=active,
        title=summary.title,
        metadata={HEADER_METADATA_KEY: dict(header.fields)},
        leaf_seq=summary.entries,
    )
    with TranscriptReader(summary.path, skip_bad_lines=skip_bad_lines) as reader:
        try:
            entries = counted(_second_pass(reader, summary), on_entries)
            if existing == "skip":
                written = write_unless_there(store, image, entries)
                if written is None:
                    return left_alone(store.get(image.id), summary)
                session = written
            else:
                session = write_image(store, image, entries, replace=existing == "replace")
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


def import_time() -> datetime:
    return datetime.now(UTC)
