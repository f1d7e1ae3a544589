"""Session management, state tracking and session lifecycle for conversations.

`aisopod_session` creates, persists, restores, searches, compacts, forks and
retires the conversation sessions of aisopod agents, on an embedded SQLite
file by default or on a shared PostgreSQL database:

    from aisopod_session import open_store
    from aisopod_shared import Message

    store = open_store("sqlite:///path/to/sessions.db")
    session = store.get_or_create("agent:main:telegram:direct:123")
    store.append(session.id, [Message.user("hi"), Message.assistant("hello")])
    page = store.history(session.id, last=50)
"""

from aisopod_session._async import AsyncSessionStore
from aisopod_session._branching import Branch
from aisopod_session._compaction import (
    CompactionPlan,
    CompactionResult,
    KeepLastTurns,
    Strategy,
    Summarizer,
    TokenBudget,
    headings_summarizer,
)
from aisopod_session._config import ResetPolicy, RetentionPolicy, SessionConfig
from aisopod_session._context import Context, ModelRef
from aisopod_session._entries import NewEntry
from aisopod_session._errors import (
    AccessDenied,
    AisopodError,
    ConfigError,
    ConflictError,
    ContextBudgetTooSmall,
    DuplicateEntryId,
    InvalidInput,
    InvalidPayload,
    InvalidSessionKey,
    PayloadTooLarge,
    SchemaVersionError,
    SearchQueryError,
    SessionExists,
    SessionNotFound,
    StoreBusy,
    StoreFull,
    StoreNotFound,
    StoreReadOnly,
    StoreUnavailable,
    TranscriptError,
)
from aisopod_session._model import (
    ENTRY_TYPES,
    SESSION_STATUSES,
    AgentStats,
    DailyUsage,
    Entry,
    ForkRef,
    Origin,
    Page,
    Session,
    SessionPage,
    SessionStatus,
)
from aisopod_session._open import default_url, open_async_store, open_store
from aisopod_session._resolver import Inbound, Resolution
from aisopod_session._retention import MaintenanceReport, Removal, UnmetBudget
from aisopod_session._search import SearchHit, SearchPage
from aisopod_session._state import REMOVE
from aisopod_session._store import UNSET, SchemaInfo, SessionStore
from aisopod_shared import Message, TokenUsage, logger


def __getattr__(name: str) -> str:
    # The version is read from the installed metadata when asked for, not at import:
    # importlib.metadata costs a tenth of a second, paid by every command.
    if name == "__version__":
        from importlib.metadata import version

        return version("aisopod-session")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logger.disable("aisopod_session")

__all__ = [
    "__version__",
    # opening a store
    "open_store",
    "open_async_store",
    "default_url",
    "SessionStore",
    "AsyncSessionStore",
    "SchemaInfo",
    "AgentStats",
    "DailyUsage",
    # values
    "Session",
    "SessionStatus",
    "SESSION_STATUSES",
    "Origin",
    "ForkRef",
    "Entry",
    "ENTRY_TYPES",
    "NewEntry",
    "Page",
    "SessionPage",
    "UNSET",
    "REMOVE",
    "Message",
    "TokenUsage",
    # lifecycle
    "SessionConfig",
    "ResetPolicy",
    "RetentionPolicy",
    "Inbound",
    "Resolution",
    "Context",
    "ModelRef",
    "Strategy",
    "KeepLastTurns",
    "TokenBudget",
    "Summarizer",
    "headings_summarizer",
    "CompactionPlan",
    "CompactionResult",
    "Branch",
    "MaintenanceReport",
    "Removal",
    "UnmetBudget",
    # search
    "SearchHit",
    "SearchPage",
    # errors
    "AisopodError",
    "InvalidInput",
    "InvalidSessionKey",
    "InvalidPayload",
    "PayloadTooLarge",
    "DuplicateEntryId",
    "ConfigError",
    "SearchQueryError",
    "TranscriptError",
    "SessionNotFound",
    "SessionExists",
    "ConflictError",
    "ContextBudgetTooSmall",
    "AccessDenied",
    "SchemaVersionError",
    "StoreUnavailable",
    "StoreBusy",
    "StoreNotFound",
    "StoreFull",
    "StoreReadOnly",
]
