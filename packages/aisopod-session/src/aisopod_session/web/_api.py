"""The JSON API under /api/: the pages' reads, as data.

Sessions have the shape `aisopod-session list --json` prints; entries, hits,
branches and stats are the store's values as the shared converter writes
them. Every list is one bounded page with the cursor of the next (`cursor`);
sessions and search hits also carry the cursor of the page before (`previous`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisopod_session.cli import session_row
from aisopod_session.web._at_once import read_route
from aisopod_session.web._pages import store_of
from aisopod_session.web._reads import (
    PAGE_SIZE,
    entries_page,
    int_param,
    search_page,
    sessions_page,
    state_at,
    text_param,
)
from aisopod_session.web._text import HIGHLIGHT
from aisopod_session.web._usage import usage
from aisopod_shared import converter

__all__ = ["api_routes"]


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(converter.unstructure(content), option=orjson.OPT_NON_STR_KEYS)


def _sessions(request: Request) -> Response:
    _, page = sessions_page(store_of(request), request.query_params)
    sessions = [session_row(s) for s in page.sessions]
    return _Json({"sessions": sessions, "cursor": page.cursor, "previous": page.previous})


def _session(request: Request) -> Response:
    store = store_of(request)
    session_id = request.path_params["session_id"]
    return _Json({**session_row(store.get(session_id)), "state": dict(store.state(session_id))})


def _entries(request: Request) -> Response:
    """`?view=path|log&before=SEQ` backwards from the end, or `?after=SEQ` forwards."""
    store = store_of(request)
    session_id = request.path_params["session_id"]
    after = int_param(request.query_params, "after")
    if after is not None:
        limit = int_param(request.query_params, "limit", minimum=1) or PAGE_SIZE
        page = store.history(session_id, after=after, limit=limit)
        view = "log"
    else:
        view, page, _ = entries_page(store, session_id, request.query_params)
    return _Json({"view": view, "entries": list(page.entries), "cursor": page.cursor})


def _state(request: Request) -> Response:
    at, state = state_at(store_of(request), request.path_params["session_id"], request.query_params)
    return _Json({"at": at, "state": dict(state)})


def _branches(request: Request) -> Response:
    return _Json({"branches": list(store_of(request).branches(request.path_params["session_id"]))})


def _forks(request: Request) -> Response:
    """`?limit=N`: the newest N sessions forked from this one (50 by default)."""
    limit = int_param(request.query_params, "limit", minimum=1) or PAGE_SIZE
    forks = store_of(request).forks(request.path_params["session_id"], limit=limit)
    return _Json({"forks": [session_row(s) for s in forks]})


def _search(request: Request) -> Response:
    page = search_page(store_of(request), request.query_params)
    if page is None:
        return _Json({"error": "q: a search needs a query"}, status_code=400)
    return _Json(
        {
            "hits": list(page.hits),
            "cursor": page.cursor,
            "previous": page.previous,
            "highlight": list(HIGHLIGHT),
        }
    )


def _usage(request: Request) -> Response:
    days = int_param(request.query_params, "days", minimum=1) or 30
    agent = text_param(request.query_params, "agent")
    found = usage(store_of(request), min(days, 366), agent=agent)
    return _Json(
        {
            "days": found.days,
            "agents": list(found.totals),
            "daily": [
                {"agent": b.agent, "day": b.day.isoformat(), "tokens": b.tokens, "cost": b.cost}
                for b in found.chart.bars
            ],
            "largest": [session_row(s) for s in found.largest],
        }
    )


def api_routes() -> list[Route]:
    """The JSON API's routes (all GET: writes are forms, with their CSRF token)."""
    return [
        read_route("/api/sessions", _sessions),
        read_route("/api/sessions/{session_id}", _session),
        read_route("/api/sessions/{session_id}/entries", _entries),
        read_route("/api/sessions/{session_id}/state", _state),
        read_route("/api/sessions/{session_id}/branches", _branches),
        read_route("/api/sessions/{session_id}/forks", _forks),
        read_route("/api/search", _search),
        read_route("/api/usage", _usage),
    ]
