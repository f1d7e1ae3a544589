"""Copying a whole store into another: streamed, verified and resumable.

`copy_store` moves every session, binding and entry of one store into
another (SQLite to PostgreSQL, say), one transaction per session, with
memory bounded by a page of entries, and then the `user:` and `agent:`
state, an owner (an agent's user, or an agent) at a time. Each copied session is read back and
compared by checksum, each shared value read back and compared with the
source's; a copy that stopped half way is run again and skips what already
arrived intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from aisopod_session._errors import SessionNotFound, StoreUnavailable
from aisopod_session.transfer._checksum import Checksum, checksummed, session_checksum
from aisopod_session.transfer._images import (
    EntryCount,
    Progress,
    counted,
    entry_images,
    leaf_state,
    read_images,
    write_image,
)
from aisopod_session.transfer._shared_state import copy_shared_state

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["CopyReport", "copy_store"]


@attrs.frozen
class CopyReport:
    """What `copy_store` did."""

    sessions: int
    copied: int
    skipped: int
    """Sessions already in the target with the same checksum (a resumed copy)."""
    entries: int
    checksums: Mapping[str, str]
    """Session id -> the checksum both stores agree on."""
    shared_values: int = 0
    """`user:` and `agent:` values of the source, each found in the target as it is
    in the source."""
    shared_written: int = 0
    """Of these, the values the target lacked or held otherwise, and was given."""


def copy_store(
    source: SessionStore,
    target: SessionStore,
    *,
    progress: Progress | None = None,
    on_entries: EntryCount | None = None,
) -> CopyReport:
    """Copy every session, binding and entry of `source` (of its agent, when scoped)
    into `target`, then its `user:` and `agent:` state.

    Streaming (memory is bounded by a page of entries, or one owner's shared
    values), one transaction per session, and resumable: a session already in
    the target with the same checksum is skipped, one that differs (a copy
    interrupted before it committed cannot; a changed source can) is written
    again. Each copied session is verified by its entry count and content
    checksum (see `session_checksum`: it covers the session's own state, not
    the shared scopes).

    The shared state goes after the sessions, an owner (an agent's user, or an
    agent) at a time: the source's values the target lacks or holds otherwise
    are written, then the owner's values are read back and each compared with
    the source's. Keys only the target has are left as they are. A copy run
    again writes none of them. `progress` is told after each session,
    `on_entries` as entries are compared or written.

    Raises:
        StoreUnavailable: when a copied session, or a shared value, does not
            read back exactly.
    """
    copied = skipped = entries = 0
    checksums: dict[str, str] = {}
    for done, (image, stream) in enumerate(read_images(source), start=1):
        state = leaf_state(source, image.id)
        checksum = Checksum(image, state)
        try:
            existing = session_checksum(target, image.id)
        except SessionNotFound:
            existing = None
        if existing is not None:
            for entry in counted(stream, on_entries):
                checksum.entry(entry)
            if checksum.hexdigest() == existing:
                skipped += 1
                checksums[image.id] = existing
                if progress is not None:
                    progress(done, image)
                continue
            stream = entry_images(source, image.id)
            checksum = Checksum(image, state)
        write_image(target, image, checksummed(counted(stream, on_entries), checksum), replace=True)
        expected = checksum.hexdigest()
        written = session_checksum(target, image.id)
        if written != expected:
            raise StoreUnavailable(
                f"session {image.id} did not copy exactly ({written} != {expected})"
            )
        checksums[image.id] = expected
        copied += 1
        entries += checksum.entries
        if progress is not None:
            progress(done, image)
    shared_values, shared_written = copy_shared_state(source, target)
    return CopyReport(
        copied + skipped, copied, skipped, entries, checksums, shared_values, shared_written
    )
