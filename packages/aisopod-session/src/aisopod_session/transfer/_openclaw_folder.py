"""Importing OpenClaw folders: an agent's `sessions.json` and transcripts, or every agent's.

OpenClaw keeps an agent's sessions in `~/.openclaw/agents/<agentId>/sessions/`:
a `sessions.json` map of session key -> `{sessionId, updatedAt, origin, ...}`
and a transcript per session beside it. `import_openclaw_agent` imports the
lot: each key gets its session as its current one, with the origin the map
records and the rest of the map's entry in `metadata["openclaw"]`; the
transcripts the map does not name come in as archived sessions without a
key, and so do the archives OpenClaw keeps of reset and cold sessions
(`<id>.jsonl.reset.<time>`, `<id>.jsonl.zst`, either compressed or not).
`import_openclaw_folder` does the same for every agent of a state folder
(`~/.openclaw`, or its `agents/`), or for the one agent folder it is given.
Each transcript is read by `_transcript_reader` and written as
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
    header_id,
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

__all__ = ["OPENCLAW_METADATA_KEY", "import_openclaw_agent", "import_openclaw_folder"]

OPENCLAW_METADATA_KEY: Final = "openclaw"
"""The session metadata key holding what `sessions.json` said about an imported session."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# OpenClaw files beside transcripts that are not sessions of their own: the
# pre-compaction twin of a session (same session id) and runtime traces.
_NOT_A_SESSION: Final = re.compile(
    r"\.checkpoint\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl(\.zst)?$"
    r"|\.trajectory\.jsonl(\.zst)?$",
    re.IGNORECASE,
)
_COMPRESSED: Final = ".zst"
# What OpenClaw makes of a transcript when its session is reset: the file
# renamed `<id>.jsonl.reset.<time>`, compressed or not. (Deleted sessions,
# `<id>.jsonl.deleted.<time>`, were deleted by their user and stay out.)
_RESET_ARCHIVE: Final = "*.jsonl.reset.*"


@attrs.frozen
class _Planned:
    """One session a folder import will write."""

    path: str
    target: ImportTarget
    session_id: str | None = None
    """The id `sessions.json` gives it (the only one, when the file is missing)."""
    missing: bool = False
    archive: bool = False
    """A copy OpenClaw keeps of a session (reset, or cold and compressed): left
    out when the folder holds the session already."""


@attrs.frozen
class _CheckedAgent:
    """An agent folder read whole: the sessions to write and what each file holds."""

    plan: list[_Planned]
    summaries: list[Summary | None]
    """Each planned file's first pass (`None` for a missing transcript)."""

    def session_ids(self) -> list[str]:
        ids = []
        for item, summary in zip(self.plan, self.summaries, strict=True):
            session_id = summary.header.session_id if summary else item.session_id
            assert session_id is not None
            ids.append(session_id)
        return ids


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
    `sessions/` folder, with or without a `sessions.json`). Each key of
    `sessions.json` gets its session as its current one, with the origin the map
    records (label, channel, account, chat type, peer, thread; OpenClaw's own
    `origin` object is kept whole in `origin.extra`) and the rest of the map's
    entry in `metadata["openclaw"]`. Keys without the `agent:` prefix (older
    OpenClaw versions) become request keys of the agent; a key naming another
    agent stays that agent's. When two keys name one key after normalising, the
    most recently updated is current and the other is archived; when two keys
    name one transcript, it is imported once, for the most recent, and the
    others are kept in its metadata. A key whose transcript is missing gets an
    empty session (a compressed `<file>.zst` beside it is its transcript).
    Transcripts the map does not name are imported as archived sessions without
    a key, and so are OpenClaw's archives of reset sessions
    (`<id>.jsonl.reset.<time>`) and compressed cold transcripts (`*.jsonl.zst`),
    streamed as they are decompressed; an archive of a session the folder holds
    otherwise is left out. OpenClaw's pre-compaction twins
    (`*.checkpoint.<uuid>.jsonl`), traces (`*.trajectory.jsonl`) and the
    `*.jsonl.deleted.*` files of deleted sessions are not imported.
    `skip_bad_lines` applies to every transcript; `on_entries` is told as
    entries are written.

    Every file is checked before anything is written; each session is then
    written in a transaction of its own.

    Raises:
        TranscriptError: for a bad `sessions.json` or transcript (nothing is written).
        SessionExists: when the store already holds one of the sessions (and
            `existing` is "error"; nothing is written).
    """
    agent_dir, sessions_dir = _agent_folders(Path(folder).expanduser())
    return _import_agents(
        store,
        [(agent_dir, sessions_dir)],
        skip_bad_lines=skip_bad_lines,
        existing=existing,
        on_entries=on_entries,
    )


def import_openclaw_folder(
    store: SessionStore,
    folder: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    existing: Existing = "error",
    on_entries: EntryCount | None = None,
    agent_id: str | None = None,
) -> list[ImportResult]:
    """Import every agent of an OpenClaw state folder, or the one agent folder given.

    `folder` is OpenClaw's state folder (`~/.openclaw`, holding `agents/`), its
    `agents/` folder (one folder per agent), an agent's folder or that agent's
    `sessions/` folder. Each agent is imported as `import_openclaw_agent`
    imports it, in the order of their names; every agent's files are checked
    before anything is written. With `agent_id`, only that agent's folder is
    imported.

    Raises:
        TranscriptError: for a folder that is none of these, or holds no folder of
            `agent_id`, or a bad file in any agent's folder (nothing is written).
        SessionExists: as `import_openclaw_agent`, over every agent.
    """
    root = Path(folder).expanduser()
    agents = _agents_in(root)
    if agent_id is not None:
        wanted = normalize_agent_id(agent_id)
        agents = [a for a in agents if normalize_agent_id(a[0].name) == wanted]
        if not agents:
            raise TranscriptError(str(root), None, f"holds no folder of agent {wanted!r}")
    return _import_agents(
        store,
        agents,
        skip_bad_lines=skip_bad_lines,
        existing=existing,
        on_entries=on_entries,
    )


def _import_agents(
    store: SessionStore,
    agents: list[tuple[Path, Path]],
    *,
    skip_bad_lines: bool,
    existing: Existing,
    on_entries: EntryCount | None,
) -> list[ImportResult]:
    """Check every agent's files, then write each agent's sessions."""
    seen: dict[str, str] = {}
    checked = [
        _check_folder(
            store,
            _plan_folder(sessions_dir, normalize_agent_id(agent_dir.name)),
            seen,
            skip_bad_lines=skip_bad_lines,
        )
        for agent_dir, sessions_dir in agents
    ]
    held = {sid: stored_session(store, sid) for one in checked for sid in one.session_ids()}
    if existing == "error":
        for session_id, found in held.items():
            if found is not None:
                raise SessionExists(session_id)  # before anything is written
    results = []
    for one in checked:
        for item, summary, session_id in zip(
            one.plan, one.summaries, one.session_ids(), strict=True
        ):
            results.append(
                _write_planned(
                    store,
                    item,
                    summary,
                    held.get(session_id),
                    skip_bad_lines=skip_bad_lines,
                    existing=existing,
                    on_entries=on_entries,
                )
            )
    return results


def _write_planned(
    store: SessionStore,
    item: _Planned,
    summary: Summary | None,
    stored: Session | None,
    *,
    skip_bad_lines: bool,
    existing: Existing,
    on_entries: EntryCount | None,
) -> ImportResult:
    """One planned session written (or left as the store holds it)."""
    if (
        stored is not None
        and existing == "skip"
        and summary is not None
        and _imported_without_key(stored, item, summary)
    ):
        # Its transcript came in alone before: import it again with the
        # folder's key, origin and metadata (it holds nothing else).
        return write_import(
            store, summary, item.target, skip_bad_lines, existing="replace", on_entries=on_entries
        )
    if stored is not None and existing == "skip":
        if summary is not None:
            return left_alone(stored, summary)
        return ImportResult(stored, item.path, 0, 0, 0, missing=True, existed=True)
    if summary is None:
        return _write_empty(store, item, replace=existing == "replace")
    return write_import(
        store, summary, item.target, skip_bad_lines, existing=existing, on_entries=on_entries
    )


def _agent_folders(folder: Path) -> tuple[Path, Path]:
    """The agent folder and its `sessions` folder (either may be given)."""
    if (folder / "sessions").is_dir():
        return folder, folder / "sessions"
    if folder.name == "sessions" and folder.is_dir():
        return folder.parent, folder
    raise TranscriptError(str(folder), None, "not an OpenClaw agent folder (no sessions/)")


def _agents_in(folder: Path) -> list[tuple[Path, Path]]:
    """The agent folders (and their `sessions` folders) a folder holds or is."""
    if (folder / "sessions").is_dir() or folder.name == "sessions":
        return [_agent_folders(folder)]
    agents_dir = folder / "agents" if (folder / "agents").is_dir() else folder
    agents = [
        (agent, agent / "sessions")
        for agent in sorted(agents_dir.iterdir() if agents_dir.is_dir() else ())
        if (agent / "sessions").is_dir()
    ]
    if not agents:
        raise TranscriptError(
            str(folder),
            None,
            "not an OpenClaw folder (no agents/, no agent folders with sessions/, no sessions/)",
        )
    return agents


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
    unnamed = ImportTarget(agent, None, False, "archived")
    for path in sorted(sessions_dir.glob("*.jsonl")):
        if path not in owners and path.is_file() and not _NOT_A_SESSION.search(path.name):
            plan.append(_Planned(str(path), unnamed))
    # OpenClaw's archives, after the live files so that a live file wins: cold
    # transcripts, then reset ones (the latest of a session first; names end
    # in the time of the reset).
    cold = sorted(sessions_dir.glob(f"*.jsonl{_COMPRESSED}"))
    reset = sorted(sessions_dir.glob(_RESET_ARCHIVE), reverse=True)
    for path in [*cold, *reset]:
        if path not in owners and path.is_file() and not _NOT_A_SESSION.search(path.name):
            plan.append(_Planned(str(path), unnamed, archive=True))
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
                file=_found(path.parent / _transcript_name(fields)),
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


def _found(path: Path) -> Path:
    """The transcript, or its compressed copy when only that is there."""
    compressed = path.with_name(path.name + _COMPRESSED)
    return compressed if not path.is_file() and compressed.is_file() else path


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
    store: SessionStore, plan: list[_Planned], seen: dict[str, str], *, skip_bad_lines: bool
) -> _CheckedAgent:
    """Read every transcript once and check the whole folder before writing anything.

    `seen` maps the session ids read so far (in any folder of the import) to
    their files: a session in two files is an error, unless the second is an
    archive OpenClaw kept of it, which is left out.
    """
    kept: list[_Planned] = []
    summaries: list[Summary | None] = []
    for item in plan:
        if item.archive and header_id(item.path) in seen:
            continue
        summary = None if item.missing else scan(item.path, skip_bad_lines=skip_bad_lines)
        session_id = summary.header.session_id if summary else item.session_id
        assert session_id is not None
        if session_id in seen:
            line = summary.header.line if summary else None
            raise TranscriptError(
                item.path, line, f"session {session_id!r} is also in {seen[session_id]}"
            )
        seen[session_id] = item.path
        kept.append(item)
        summaries.append(summary)
    return _CheckedAgent(kept, summaries)


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
