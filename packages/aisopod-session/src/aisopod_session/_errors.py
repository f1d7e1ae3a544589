"""The errors aisopod-session raises, all rooted in `AisopodError`."""

from __future__ import annotations

from aisopod_shared import AisopodError, InvalidInput

__all__ = [
    "AccessDenied",
    "AisopodError",
    "ConfigError",
    "ConflictError",
    "ContextBudgetTooSmall",
    "DuplicateEntryId",
    "InvalidInput",
    "InvalidPayload",
    "InvalidSessionKey",
    "PayloadTooLarge",
    "SchemaVersionError",
    "SearchQueryError",
    "SessionExists",
    "SessionNotFound",
    "StoreBusy",
    "StoreFull",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreUnavailable",
    "TranscriptError",
]


class InvalidSessionKey(InvalidInput):
    """Raised when a session key is empty or malformed."""

    def __init__(self, key: object, reason: str) -> None:
        self.key = key
        super().__init__(f"invalid session key {key!r}: {reason}", field="key")


class InvalidPayload(InvalidInput):
    """Raised when an entry's content cannot be stored faithfully (not JSON, NaN, bad UTF-8)."""


class PayloadTooLarge(InvalidInput):
    """Raised when one entry's serialized payload is over the store's size limit.

    Attributes:
        size: the payload's size in bytes.
        limit: the store's limit in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"entry payload is {size} bytes, over the limit of {limit}", field="payload"
        )


class ContextBudgetTooSmall(InvalidInput):
    """Raised when `max_tokens` cannot hold the shortest context that starts well: the
    system prompt and summary, then the last user message and what follows it.

    Attributes:
        max_tokens: the budget asked for.
        needed: the tokens of that shortest context.
    """

    def __init__(self, max_tokens: int, needed: int) -> None:
        self.max_tokens = max_tokens
        self.needed = needed
        super().__init__(
            f"{max_tokens} tokens cannot hold the last user message and what follows it"
            f" ({needed} needed)",
            field="max_tokens",
        )


class DuplicateEntryId(InvalidInput):
    """Raised when an appended entry's id is already used in its session."""


class SessionExists(InvalidInput):
    """Raised when a session written whole (an import, a copy) has an id the store holds."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"a session {session_id!r} is already in the store", field="id")


class ConfigError(InvalidInput):
    """Raised when a configuration value is invalid; `field` names it."""


class SearchQueryError(InvalidInput):
    """Raised when a full-text search query cannot be parsed."""


class SessionNotFound(AisopodError, LookupError):
    """Raised when no session has the given id (or no session is bound to a key)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"no session {ref!r}")


class ConflictError(AisopodError):
    """Raised when a write's `expected_version` is not the session's version; nothing was written.

    Attributes:
        session_id: the session written to.
        expected: the version the caller expected.
        actual: the session's version in the store.
    """

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"session {session_id!r} is at version {actual}, not the expected {expected}"
        )


class AccessDenied(AisopodError, PermissionError):
    """Raised when an agent-scoped store handle reaches for another agent's session."""

    def __init__(self, agent_id: str, ref: str) -> None:
        self.agent_id = agent_id
        self.ref = ref
        super().__init__(f"a store scoped to agent {agent_id!r} cannot reach {ref!r}")


class SchemaVersionError(AisopodError):
    """Raised when the database was written by a newer aisopod-session than this one.

    Attributes:
        found: the schema version in the database.
        supported: the newest schema version this code knows.
    """

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"the database has schema version {found}; this aisopod-session knows up to "
            f"{supported}: upgrade aisopod-session to open it"
        )


class StoreUnavailable(AisopodError):
    """Raised when the database cannot be reached or stopped answering; retry later."""


class StoreNotFound(StoreUnavailable):
    """Raised when a store is opened with `create=False` and there is none at its URL
    (nothing was created).

    Attributes:
        url: where the store was looked for (without a password).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"there is no store at {url}")


class StoreBusy(StoreUnavailable):
    """Raised when the database stayed locked by other writers for longer than the busy timeout."""


class StoreFull(AisopodError):
    """Raised when the database has no room left (disk full, size limit); nothing was written."""


class StoreReadOnly(AisopodError):
    """Raised when a write is asked of a store that can only be read (a file or folder
    that is not writable, a read-only filesystem or role, or `read_only=True`);
    nothing was written."""


class TranscriptError(InvalidInput):
    """Raised when a transcript or dump file is malformed.

    Attributes:
        path: the file.
        line: the 1-based line number, when the problem is on a line.
    """

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
