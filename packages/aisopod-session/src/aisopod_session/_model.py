"""The values a store hands out: sessions, entries, pages, origins."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import attrs

from aisopod_session._errors import InvalidInput
from aisopod_shared import Message, TokenUsage, structure

__all__ = [
    "AgentStats",
    "DailyUsage",
    "ENTRY_TYPES",
    "SESSION_STATUSES",
    "Entry",
    "ForkRef",
    "Origin",
    "Page",
    "Session",
    "SessionPage",
    "SessionStatus",
]

SessionStatus: TypeAlias = Literal["active", "idle", "archived"]
SESSION_STATUSES: Final[tuple[SessionStatus, ...]] = ("active", "idle", "archived")

ENTRY_TYPES: Final = (
    "message",
    "compaction",
    "branch_summary",
    "model_change",
    "thinking_level_change",
    "custom",
    "custom_message",
    "label",
    "session_info",
    "state",
)
"""The entry types aisopod gives meaning to; other types are stored and exported verbatim."""


def _optional_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"must be a string, got {type(value).__name__}", field="origin")
    return value


@attrs.frozen
class Origin:
    """Where a session came from: the parts of its key, kept beside it.

    Keys are names and are never re-parsed to recover these; whoever routes a
    message records them here when the session is made.
    """

    channel: str | None = attrs.field(default=None, converter=_optional_str)
    account: str | None = attrs.field(default=None, converter=_optional_str)
    chat_type: str | None = attrs.field(default=None, converter=_optional_str)
    peer: str | None = attrs.field(default=None, converter=_optional_str)
    thread: str | None = attrs.field(default=None, converter=_optional_str)
    label: str | None = attrs.field(default=None, converter=_optional_str)
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class ForkRef:
    """The session and entry a fork was made from."""

    session_id: str
    seq: int


@attrs.frozen
class Session:
    """A conversation: its identity, status, counters, usage totals and metadata.

    `version` goes up by one on every write, for optimistic concurrency
    (`expected_version=`). `leaf_seq` is the entry new appends hang from
    (0 while the session is empty).
    """

    id: str
    agent_id: str
    key: str | None
    status: SessionStatus
    title: str | None
    created_at: datetime
    updated_at: datetime
    active_at: datetime
    entry_count: int
    message_count: int
    compaction_count: int
    compacted_at: datetime | None
    usage: TokenUsage
    size_bytes: int
    metadata: Mapping[str, Any]
    origin: Origin
    fork_parent: ForkRef | None
    leaf_seq: int
    version: int
    user_id: str | None = None
    """The user the session is with (its `user:` state is that user's), if known."""


# Entries that the context shows as messages of their own, and the role it gives them.
_MESSAGE_LIKE: Final[Mapping[str, str]] = {
    "compaction": "compactionSummary",
    "branch_summary": "branchSummary",
    "custom_message": "custom",
}


def role_name(entry_type: str, role: str | None) -> str:
    """The role people see for an entry, the same in history, context and search:
    a message's role (`tool` for a tool result), `compactionSummary`,
    `branchSummary` or `custom` for the entries the context shows as such,
    else the entry's type (`model_change`, `label`, ...)."""
    if role:
        return role
    return _MESSAGE_LIKE.get(entry_type, entry_type)


def stored_forms(role: str) -> tuple[str, ...]:
    """What a search by `role` (as `role_name` gives it) matches: the stored role,
    or the type of the entries shown with that role."""
    return (role, *(kind for kind, shown in _MESSAGE_LIKE.items() if shown == role))


@attrs.frozen
class Entry:
    """One entry of a session's append-only log.

    `payload` is the entry as the transcript format writes it, less `type`,
    `id` and `parentId` (kept as fields here): for a message entry,
    `{"timestamp": ..., "message": {...}}`. It is stored verbatim.
    """

    # The store builds entries with positional arguments, in this order.
    session_id: str
    seq: int
    id: str
    parent_seq: int | None
    type: str
    role: str | None
    payload: Mapping[str, Any]
    text: str
    usage: TokenUsage | None
    created_at: datetime
    idempotency_key: str | None = None
    tokens: int = 0
    """The store's token count for the entry: the provider's output tokens for a
    model reply that reported usage, else an estimate from its size."""

    @property
    def shown_role(self) -> str:
        """`role_name` of the entry: its role as history, context and search show it."""
        return role_name(self.type, self.role)

    @property
    def message(self) -> Message | None:
        """The message of a `message` entry, else `None`.

        Raises:
            InvalidInput: when a stored message (e.g. an imported one) is not
                message-shaped.
        """
        if self.type != "message":
            return None
        return structure(self.payload.get("message"), Message)


_T = TypeVar("_T")


class Items(Generic[_T]):
    """A result that iterates, indexes and `len()`s as its items (`_items()`)."""

    __slots__ = ()

    def _items(self) -> tuple[_T, ...]:
        """The field holding the result's items: each result class names its own
        (`entries`, `sessions`, `hits`, `messages`); this base has none."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[_T]:
        return iter(self._items())

    def __getitem__(self, index: int) -> _T:
        return self._items()[index]


@attrs.frozen
class Page(Items["Entry"]):
    """A page of entries in chronological order; iterate it, index it, `len()` it.

    `next` fetches the page after this one in the direction it was read, and
    `previous` the one on its other side: pass either as `cursor=` to the call
    that gave this page (`None`: nothing further that way). `cursor` is the
    seq `next` starts from: `before=` after a backward read (`last=`,
    `before=`), `after=` after a forward read.
    """

    entries: tuple[Entry, ...]
    cursor: int | None
    next: str | None = None
    previous: str | None = None

    def _items(self) -> tuple[Entry, ...]:
        return self.entries


@attrs.frozen
class SessionPage(Items["Session"]):
    """A page of sessions, most recently updated first; iterate it, index it, `len()` it.

    `next` (also `cursor`) fetches the page after this one and `previous` the
    page before it, in the same order: pass either as `cursor=` to `list`
    (`None`: nothing further that way; `previous` is `None` on the first page).
    """

    sessions: tuple[Session, ...]
    cursor: str | None
    previous: str | None = None

    def _items(self) -> tuple[Session, ...]:
        return self.sessions

    @property
    def next(self) -> str | None:
        return self.cursor


@attrs.frozen
class AgentStats:
    """One agent's share of a store."""

    agent_id: str
    sessions: int
    active: int
    entries: int
    messages: int
    tokens: int
    cost: float
    size_bytes: int


@attrs.frozen
class DailyUsage:
    """One agent's usage on one day (UTC): the entries appended that day with usage."""

    agent_id: str
    day: date
    tokens: int
    """The entries' total tokens."""
    cost: float
    entries: int
    """How many entries carried usage."""
