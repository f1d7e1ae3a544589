"""Identifiers the store makes."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_entry_id", "new_session_id"]


def new_session_id() -> str:
    """A UUID (version 7 layout): time-ordered, so new sessions land at the end of indexes."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def new_entry_id() -> str:
    """16 hex characters: unique within a session in practice; the store retries on a clash."""
    return os.urandom(8).hex()
