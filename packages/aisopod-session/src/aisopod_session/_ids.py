"""Identifiers the store makes."""

from __future__ import annotations

import os
import random
import time
import uuid

__all__ = ["entry_id", "new_entry_suffix", "new_entry_suffixes", "new_session_id"]


def new_session_id() -> str:
    """A UUID (version 7 layout): time-ordered, so new sessions land at the end of indexes."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def entry_id(seq: int, suffix: str) -> str:
    """The id the store gives the entry at `seq`: the seq in hex (at least 8 digits),
    then a suffix of 4 random hex digits from `new_entry_suffix`.

    Ids the store makes never clash with each other (the seq is in them) and
    sort in the order they are written, so the (session, id) index grows at
    its end instead of at random places; a clash with an imported id is
    possible, and the store then retries with fresh suffixes. PostgreSQL
    builds the same id in SQL (`to_hex`, padded to 8 digits).
    """
    return f"{seq:08x}{suffix}"


_suffixes = random.Random()
# A generator of our own: a caller's random.seed() must not make ids
# predictable, nor our draws shift the caller's sequence. Reseeded in a forked
# child, so parent and child do not draw the same digits.
os.register_at_fork(after_in_child=_suffixes.seed)


def new_entry_suffix() -> str:
    """4 random hex digits for an entry id. They need to differ, not to be secret:
    `random` costs no system call, unlike `os.urandom`."""
    return f"{_suffixes.getrandbits(16):04x}"


def new_entry_suffixes(count: int) -> list[str]:
    """`count` suffixes as `new_entry_suffix` makes them, from one draw (a batch of a
    thousand entries asks once, not a thousand times)."""
    if count == 1:
        return [new_entry_suffix()]
    digits = f"{_suffixes.getrandbits(16 * count):0{4 * count}x}"
    return [digits[at : at + 4] for at in range(0, 4 * count, 4)]
