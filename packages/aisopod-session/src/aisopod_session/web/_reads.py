"""The reads behind every page and API route: query parameters in, one store
call out. Pages and the JSON API share them, so a filter or a page size means
the same in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from aisopod_session._errors import InvalidInput
from aisopod_session._model import SESSION_STATUSES, Page, SessionPage, SessionStatus
from aisopod_session._search import SearchPage
from aisopod_session._store import SessionStore
from aisopod_session.web._text import HIGHLIGHT

__all__ = [
    "PAGE_SIZE",
    "View",
    "date_param",
    "entries_page",
    "int_param",
    "session_filters",
    "sessions_page",
    "search_page",
    "state_at",
    "text_param",
]

PAGE_SIZE = 50
"""Entries, sessions and hits a page shows."""

View = Literal["path", "log"]


def text_param(params: Mapping[str, str], name: str) -> str | None:
    """A query parameter's text; absent or blank is `None`."""
    value = params.get(name, "").strip()
    return value or None


def int_param(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """A query parameter as a whole number, or `None` when absent.

    Raises:
        InvalidInput: for anything but digits, or a number below `minimum`.
    """
    value = text_param(params, name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18 or int(value) < minimum:
        raise InvalidInput(f"must be a whole number of at least {minimum}", field=name)
    return int(value)


@attrs.frozen
class SessionFilters:
    """The session list's filters, as the list page's form and the API name them."""

    agent: str | None = None
    status: SessionStatus | None = None
    key_prefix: str | None = None
    user: str | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for the next page's link)."""
        values = {
            "agent": self.agent,
            "status": self.status,
            "key_prefix": self.key_prefix,
            "user": self.user,
            "updated_after": self.updated_after.date().isoformat() if self.updated_after else None,
            "updated_before": (
                self.updated_before.date().isoformat() if self.updated_before else None
            ),
        }
        return {k: v for k, v in values.items() if v}


def date_param(params: Mapping[str, str], name: str) -> datetime | None:
    """A query parameter as the start (00:00 UTC) of a day, or `None` when absent.

    Raises:
        InvalidInput: for anything but a date, YYYY-MM-DD (a time is allowed too).
    """
    value = text_param(params, name)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("must be a date, YYYY-MM-DD", field=name) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def session_filters(params: Mapping[str, str]) -> SessionFilters:
    """The list filters in a request's query.

    Raises:
        InvalidInput: for an unknown status or a date that is not YYYY-MM-DD.
    """
    status = text_param(params, "status")
    if status is not None and status not in SESSION_STATUSES:
        raise InvalidInput(f"must be one of {', '.join(SESSION_STATUSES)}", field="status")
    return SessionFilters(
        agent=text_param(params, "agent"),
        status=status,  # checked against SESSION_STATUSES above
        key_prefix=text_param(params, "key_prefix"),
        user=text_param(params, "user"),
        updated_after=date_param(params, "updated_after"),
        updated_before=date_param(params, "updated_before"),
    )


def sessions_page(
    store: SessionStore, params: Mapping[str, str]
) -> tuple[SessionFilters, SessionPage]:
    """A page of the session list, newest first, filtered as the query says."""
    filters = session_filters(params)
    page = store.list(
        agent_id=filters.agent,
        status=filters.status,
        key_prefix=filters.key_prefix,
        user_id=filters.user,
        updated_after=filters.updated_after,
        updated_before=filters.updated_before,
        limit=int_param(params, "limit", minimum=1) or PAGE_SIZE,
        cursor=text_param(params, "cursor"),
    )
    return filters, page


def entries_page(
    store: SessionStore, session_id: str, params: Mapping[str, str]
) -> tuple[View, Page, int | None]:
    """A page of a session: the active path (`view=path`, the default; `leaf=SEQ`
    for the branch ending at that entry) or the whole log (`view=log`), its end
    unless `before=SEQ` asks for an earlier page. Returns the view, the page, and
    the leaf of the branch it read when the query named one."""
    view = text_param(params, "view") or "path"
    if view not in ("path", "log"):
        raise InvalidInput("must be path or log", field="view")
    before = int_param(params, "before", minimum=1)
    limit = int_param(params, "limit", minimum=1) or PAGE_SIZE
    if view == "path":
        leaf = int_param(params, "leaf", minimum=1)
        return "path", store.path(session_id, last=limit, before=before, leaf=leaf), leaf
    if before is None:
        return "log", store.history(session_id, last=limit), None
    return "log", store.history(session_id, before=before, limit=limit), None


def search_page(store: SessionStore, params: Mapping[str, str]) -> SearchPage | None:
    """The search the query asks for (`q`, with `agent`, `key_prefix`, `role`,
    `session`), snippets marked with `HIGHLIGHT`; `None` without a query."""
    query = text_param(params, "q")
    if query is None:
        return None
    return store.search(
        query,
        agent_id=text_param(params, "agent"),
        key_prefix=text_param(params, "key_prefix"),
        role=text_param(params, "role"),
        session_id=text_param(params, "session"),
        limit=int_param(params, "limit", minimum=1) or 20,
        cursor=text_param(params, "cursor"),
        highlight=HIGHLIGHT,
    )


def state_at(
    store: SessionStore, session_id: str, params: Mapping[str, str]
) -> tuple[int | None, Mapping[str, Any]]:
    """The session's state at its leaf, or at entry `at` when the query names one."""
    at = int_param(params, "at", minimum=1)
    return at, store.state(session_id, at_seq=at)
