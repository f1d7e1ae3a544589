"""The HTML pages: the session list, a session, the live feed of its new
entries, its transcript, search and usage. Each page is a few store calls;
nothing here reads more than a page."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aisopod_session._model import Session
from aisopod_session._store import SessionStore
from aisopod_session.transfer import export_transcript
from aisopod_session.web._at_once import read_route
from aisopod_session.web._reads import (
    PAGE_SIZE,
    entries_page,
    int_param,
    search_page,
    sessions_page,
    state_at,
    text_param,
)
from aisopod_session.web._templates import Html
from aisopod_session.web._usage import usage
from aisopod_session.web._views import entry_views
from aisopod_shared import converter

__all__ = ["fragment", "page_routes", "render", "store_of"]

MAX_BRANCHES_SHOWN = 20
MAX_FORKS_SHOWN = 20
"""The newest forks a session page lists (one more is read, to say there are more)."""


def store_of(request: Request) -> SessionStore:
    """The store the app serves."""
    store: SessionStore = request.app.state.store
    return store


def render(request: Request, name: str, context: dict[str, Any], **kwargs: Any) -> Response:
    """A page from its template, with what every page shows (scope, writes, CSRF)."""
    settings = request.app.state.settings
    base = {
        "scope": store_of(request).agent_id,
        "writes": settings.allow_writes,
        "csrf": settings.csrf if settings.allow_writes else "",
    }
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, {**base, **context}, **kwargs
    )
    return response


def fragment(request: Request, name: str, context: dict[str, Any]) -> Html:
    """A part of a page rendered on its own, for the page to output whole.

    Jinja passes each piece of an included template up through every block and
    template around it; a page's 50 entries are about 1,100 pieces, and the
    three levels above them cost a fifth of the page (the session list's 50
    rows likewise). Rendered apart, they are joined once."""
    template = request.app.state.templates.get_template(name)
    return Html(template.render(context))


def sessions(request: Request) -> Response:
    filters, page = sessions_page(store_of(request), request.query_params)
    rows = fragment(request, "_session_rows.html", {"sessions": page.sessions})
    return render(request, "sessions.html", {"filters": filters, "page": page, "rows_html": rows})


def _write_actions(store: SessionStore, session: Session) -> list[str]:
    """The write actions a session page offers: archive only for a session that is
    not archived and that no key points at (a key's current session is archived
    by resetting the key)."""
    current = store.current(session.key) if session.key is not None else None
    bound = current is not None and current.id == session.id
    archive = ["archive"] if session.status != "archived" and not bound else []
    return ["reset", "compact", "rewind", "fork", *archive, "delete"]


def session(request: Request) -> Response:
    store = store_of(request)
    session_id = request.path_params["session_id"]
    found = store.get(session_id)
    view, page, leaf = entries_page(store, session_id, request.query_params)
    at, state = state_at(store, session_id, request.query_params)
    branches = store.branches(session_id)
    forks = store.forks(session_id, limit=MAX_FORKS_SHOWN + 1)
    # New entries go on the active branch: an earlier page or another branch has no feed.
    live = int_param(request.query_params, "before") is None and leaf is None
    writes = request.app.state.settings.allow_writes
    return render(
        request,
        "session.html",
        {
            "session": found,
            "origin": converter.unstructure(found.origin),
            "view": view,
            "branch_leaf": leaf,
            "page": page,
            "entries_html": fragment(
                request, "_entries.html", {"entries": entry_views(page.entries)}
            ),
            "state": dict(state),
            "state_at": at,
            "branches": branches[-MAX_BRANCHES_SHOWN:],
            "more_branches": max(len(branches) - MAX_BRANCHES_SHOWN, 0),
            "forks": forks[:MAX_FORKS_SHOWN],
            "more_forks": len(forks) > MAX_FORKS_SHOWN,
            "live": live,
            "actions": _write_actions(store, found) if writes else [],
        },
    )


def new_entries(request: Request) -> Response:
    """The entries after `after=SEQ`, as the page draws them: the live feed's fragment.

    `X-Last-Seq` says where the next poll starts."""
    store = store_of(request)
    session_id = request.path_params["session_id"]
    after = int_param(request.query_params, "after") or 0
    page = store.history(session_id, after=after, limit=PAGE_SIZE)
    last = page.entries[-1].seq if page.entries else after
    return render(
        request,
        "_entries.html",
        {"entries": entry_views(page.entries), "session_id": session_id},
        headers={"X-Last-Seq": str(last)},
    )


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


SPOOL_BYTES = 8 * 1024 * 1024
"""A transcript up to this size is written in memory, a larger one to a temporary file."""


def transcript(request: Request) -> Response:
    """The session as a transcript (JSONL), a download, never a page.

    Written whole first (the export reads a page of entries at a time), so a
    store error is an error page, not a cut file; then sent in chunks."""
    store = store_of(request)
    session_id = request.path_params["session_id"]
    store.get(session_id)  # 404 before anything is written
    # Closed by `_chunks` once sent (or below, when the export fails).
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=SPOOL_BYTES, mode="w+", encoding="utf-8"
    )
    try:
        export_transcript(store, session_id, spool)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    name = _UNSAFE_NAME.sub("_", session_id)[:100] or "session"
    return StreamingResponse(
        _chunks(spool),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}.jsonl"'},
    )


def _chunks(spool: IO[str]) -> Iterator[str]:
    with spool:
        while chunk := spool.read(65536):
            yield chunk


def search(request: Request) -> Response:
    params = request.query_params
    return render(
        request,
        "search.html",
        {
            "q": text_param(params, "q") or "",
            "agent": text_param(params, "agent") or "",
            "role": text_param(params, "role") or "",
            "key_prefix": text_param(params, "key_prefix") or "",
            "page": search_page(store_of(request), params),
        },
    )


def usage_page(request: Request) -> Response:
    days = int_param(request.query_params, "days", minimum=1) or 30
    agent = text_param(request.query_params, "agent")
    return render(
        request, "usage.html", {"usage": usage(store_of(request), min(days, 366), agent=agent)}
    )


def page_routes() -> list[Route]:
    """The HTML pages' routes."""
    return [
        read_route("/", sessions, name="sessions"),
        read_route("/sessions/{session_id}", session, name="session"),
        read_route("/sessions/{session_id}/entries", new_entries, name="new_entries"),
        read_route("/sessions/{session_id}/transcript.jsonl", transcript, name="transcript"),
        read_route("/search", search, name="search"),
        read_route("/usage", usage_page, name="usage"),
    ]
