"""Moving sessions whole: import, export, dump, restore, copy and checksum.

Sessions come in and go out of a store here, whole and exactly:

- OpenClaw / pi transcripts (`spec/pi-transcript.md`): `import_transcript`
  reads one JSONL file (versions 1, 2 and 3, upgraded to 3 on the way;
  plain or zstd-compressed) as a session, `import_openclaw_agent` a whole
  OpenClaw agent folder (`sessions.json` with its keys and origins, and every
  transcript beside it, the archives of reset and cold sessions included),
  `import_openclaw_folder` every agent of an OpenClaw state folder, and
  `export_transcript` writes a session back as a version 3 file, so
  `export(import(file))` gives back every entry.
- The native JSONL dump of a whole store: `dump_store` and `restore_store`,
  for a backup or a move; restore(dump(store)) gives back every session,
  binding and entry exactly, and the `user:` and `agent:` state.
- `copy_store` copies one store into another (SQLite to PostgreSQL, say):
  resumable, each session verified by its `session_checksum`, and each
  `user:` and `agent:` value read back and compared.
- `SessionImage` and `EntryImage` are everything a session is, in a form any
  store writes back exactly; `read_images` streams them out of a store.

    from aisopod_session import open_store
    from aisopod_session.transfer import copy_store, export_transcript, import_openclaw_agent

    store = open_store("sqlite:///sessions.db")
    for result in import_openclaw_agent(store, "~/.openclaw/agents/main"):
        print(result.session.id, result.session.key, result.entries)
    export_transcript(store, result.session.id, "out.jsonl")
    with open_store("postgresql://gateway@db.internal/aisopod") as target:
        report = copy_store(store, target)

Everything streams: memory holds a page of entries (and, for an import, the
map from entry ids to positions), however large a store or a session is.
Imports read a file twice, once to check it and once to write it, and a
file the store cannot take whole raises a `TranscriptError` naming the file
and line, with nothing written. Each session is written in one transaction.

These functions are synchronous (they read and write files); with an
`AsyncSessionStore`, run them on a thread with its synchronous store:
`await asyncio.to_thread(import_transcript, store.sync, path)`.
"""

from aisopod_session.transfer._checksum import session_checksum
from aisopod_session.transfer._copy import CopyReport, copy_store
from aisopod_session.transfer._images import (
    EntryCount,
    EntryImage,
    Progress,
    SessionImage,
    read_images,
)
from aisopod_session.transfer._native import (
    DUMP_FORMAT,
    DumpReport,
    RestoreReport,
    dump_store,
    restore_store,
)
from aisopod_session.transfer._openclaw_folder import (
    OPENCLAW_METADATA_KEY,
    import_openclaw_agent,
    import_openclaw_folder,
)
from aisopod_session.transfer._transcript_import import (
    HEADER_METADATA_KEY,
    Existing,
    ImportResult,
    import_transcript,
)
from aisopod_session.transfer._transcript_reader import SkippedLine
from aisopod_session.transfer._transcript_writer import TRANSCRIPT_VERSION, export_transcript

__all__ = [
    # OpenClaw / pi transcripts
    "import_transcript",
    "import_openclaw_agent",
    "import_openclaw_folder",
    "export_transcript",
    "ImportResult",
    "SkippedLine",
    "Existing",
    "TRANSCRIPT_VERSION",
    "HEADER_METADATA_KEY",
    "OPENCLAW_METADATA_KEY",
    # native dump and restore
    "dump_store",
    "restore_store",
    "DumpReport",
    "RestoreReport",
    "DUMP_FORMAT",
    # copying between stores
    "copy_store",
    "CopyReport",
    "session_checksum",
    # images of sessions and entries
    "SessionImage",
    "EntryImage",
    "read_images",
    # progress callbacks
    "Progress",
    "EntryCount",
]
