"""Importing a whole OpenClaw agent folder: `sessions.json` and its transcripts.

OpenClaw keeps an agent's sessions in `~/.openclaw/agents/<agentId>/sessions/`:
a `sessions.json` map of session key -> `{sessionId, updatedAt, origin, ...}`
and a transcript per session beside it. `import_openclaw_agent` imports the
lot: each key gets its session as its current one, with the origin the map
records and the rest of the map's entry in `metadata["openclaw"]`; the
transcripts the map does not name come in as archived sessions without a
key. Each transcript is read by `_transcript_reader` and written as
`import_transcript` writes it.

Every file is read and checked before anything is written; then each
transcript is read again as its session is written, in a transaction of its
own. A bad `sessions.json` or transcript raises a `TranscriptError` naming
the file (and the line), and nothing is written.

This is synchronous (it reads files); with an `AsyncSessionStore`, run it on
a thread with its synchronous store:
`await asyncio.to_thread(import_openclaw_agent, store.sync, folder)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from aisopod_session._errors import SessionExists, TranscriptError
from aisopod_session._model import Origin, Session
from aisopod_session._validate import session_key
from aisopod_session.keys import normalize_agent_id, normalize_channel
from aisopod_session.transfer._images import EntryCount, write_image
from aisopod_session.transfer._transcript_import import (
    Existing,
    ImportResult,
    ImportTarget,
    import_time,
    left_alone,
    scan,
    stored_session,
    write_import,
)
from aisopod_session.transfer._transcript_reader import Summary, parse_time, valid_id
from aisopod_shared import InvalidInput

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["OPENCLAW_METADATA_KEY", "import_openclaw_agent"]

OPENCLAW_METADATA_KEY: Final = "openclaw"
"""The session metadata key holding what `sessions.json` said about an imported session."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# OpenClaw files beside transcripts that are not sessions of their own: the
# pre-compaction twin of a session (same session id) and runtime traces.
_NOT_A_SESSION: Final = re.compile(
    r"\.checkpoint\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl$"
    r"|\.trajectory\.jsonl$",
    re.IGNORECASE,
)


@attrs.frozen
class _Planned:
    """One session a folder import will write."""

    path: str
    target: ImportTarget
    session_id: str | None = None
    """The id `sessions.json` gives it (the only one, when the file is missing)."""
    missing: bool = False


def import_openclaw_agent(
    store: SessionStore,
    folder: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    existing: Existing = "error",
    on_entries: EntryCount | None = None,
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
    sessions. `skip_bad_lines` applies to every transcript; `on_entries` is told
    as entries are written.

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
    held = {sid: stored_session(store, sid) for sid in ids if sid is not None}
    if existing == "error":
        for session_id, found in held.items():
            if found is not None:
                raise SessionExists(session_id)  # before anything is written
    results = []
    for item, summary, maybe_id in zip(plan, summaries, ids, strict=True):
        stored = held.get(maybe_id) if maybe_id is not None else None
        if (
            stored is not None
            and existing == "skip"
            and summary is not None
            and _imported_without_key(stored, item, summary)
        ):
            # Its transcript came in alone before: import it again with the
            # folder's key, origin and metadata (it holds nothing else).
            results.append(
                write_import(
                    store,
                    summary,
                    item.target,
                    skip_bad_lines,
                    existing="replace",
                    on_entries=on_entries,
                )
            )
        elif stored is not None and existing == "skip":
            results.append(
                left_alone(stored, summary)
                if summary
                else ImportResult(stored, item.path, 0, 0, 0, missing=True, existed=True)
            )
        elif summary is None:
            results.append(_write_empty(store, item, replace=existing == "replace"))
        else:
            results.append(
                write_import(
                    store,
                    summary,
                    item.target,
                    skip_bad_lines,
                    existing=existing,
                    on_entries=on_entries,
                )
            )
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
            plan.append(_Planned(str(path), ImportTarget(agent, None, False, "archived")))
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
        if not isinstance(fields, dict) or not valid_id(fields.get("sessionId")):
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
    return parse_time(value)


def _planned_for_key(entry: _MapEntry, current: bool, aliases: list[_MapEntry]) -> _Planned:
    fields = entry.fields
    openclaw: dict[str, Any] = {
        "key": entry.original_key,
        "entry": {k: v for k, v in fields.items() if k not in ("sessionId", "sessionFile")},
    }
    if aliases:
        openclaw["aliases"] = {alias.original_key: dict(alias.fields) for alias in aliases}
    target = ImportTarget(
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
) -> list[Summary | None]:
    """Read every transcript once and check the whole folder before writing anything."""
    summaries: list[Summary | None] = []
    seen: dict[str, str] = {}
    for item in plan:
        summary = None if item.missing else scan(item.path, skip_bad_lines=skip_bad_lines)
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


def _imported_without_key(stored: Session, item: _Planned, summary: Summary) -> bool:
    """Whether a stored session is this folder's transcript imported on its own:
    no key where the folder gives one, and the transcript's entries, no more."""
    return (
        item.target.key is not None and stored.key is None and stored.entry_count == summary.entries
    )


def _write_empty(store: SessionStore, item: _Planned, *, replace: bool = False) -> ImportResult:
    """The session of a key whose transcript is missing: no entries, its id and origin kept."""
    target = item.target
    assert item.session_id is not None
    created = target.created_at or target.updated_at or import_time()
    image = target.image(item.session_id, created=created, active=created)
    session = write_image(store, image, (), replace=replace)
    return ImportResult(session, item.path, 0, 0, 0, missing=True)
