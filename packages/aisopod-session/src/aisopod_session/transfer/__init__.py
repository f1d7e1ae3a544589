"""Moving sessions whole: dump, restore, copy and checksum.

- The native JSONL dump of a whole store: `dump_store` and `restore_store`,
  for a backup or a move; restore(dump(store)) gives back every session,
  binding and entry exactly.
- `copy_store` copies one store into another (SQLite to PostgreSQL, say):
  resumable, and each session verified by its `session_checksum`.
- `SessionImage` and `EntryImage` are everything a session is, in a form any
  store writes back exactly; `read_images` streams them out of a store.

    from aisopod_session import open_store
    from aisopod_session.transfer import copy_store, dump_store

    store = open_store("sqlite:///sessions.db")
    with open("backup.jsonl", "wb") as out:
        dump_store(store, out)
    with open_store("postgresql://gateway@db.internal/aisopod") as target:
        report = copy_store(store, target)

Everything streams: memory holds a page of entries, however large a store
or a session is. Each session is written in one transaction.

These functions are synchronous (they read and write files); with an
`AsyncSessionStore`, run them on a thread with its synchronous store:
`await asyncio.to_thread(dump_store, store.sync, out)`.
"""

from aisopod_session.transfer._checksum import session_checksum
from aisopod_session.transfer._copy import CopyReport, copy_store
from aisopod_session.transfer._images import EntryImage, SessionImage, read_images
from aisopod_session.transfer._native import (
    DUMP_FORMAT,
    RestoreReport,
    dump_store,
    restore_store,
)

__all__ = [
    # native dump and restore
    "dump_store",
    "restore_store",
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
]
