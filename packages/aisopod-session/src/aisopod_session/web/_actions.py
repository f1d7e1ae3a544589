"""Write actions, offered only with `--allow-writes`: reset a key, compact,
rewind, fork, archive (a session no key points at), delete. Each is a
confirmation page (GET) and a form POST that carries the app's CSRF token; a
POST from another origin is refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from aisopod_session._compaction import KeepLastTurns
from aisopod_session._errors import InvalidInput
from aisopod_session._store import SessionStore
from aisopod_session.web._pages import render, store_of
from aisopod_session.web._reads import int_param
from aisopod_session.web._security import same_secret

__all__ = ["ACTIONS", "action_routes"]

MAX_FORM_BYTES = 16_384


@attrs.frozen
class Action:
    """One write: what the confirmation page says, the number it asks for, and
    what it does (returning the address to go to after)."""

    label: str
    question: str
    field: str | None
    run: Callable[[SessionStore, str, int | None], str]
    required: bool = True
    default: int | None = None


def _page(session_id: str) -> str:
    return f"/sessions/{quote(session_id, safe='')}"


def _reset(store: SessionStore, session_id: str, _: int | None) -> str:
    session = store.get(session_id)
    if session.key is None:
        raise InvalidInput("the session has no key to reset", field="session_id")
    return _page(store.reset(session.key).id)


def _compact(store: SessionStore, session_id: str, turns: int | None) -> str:
    store.compact(session_id, KeepLastTurns(turns or 1))
    return _page(session_id)


def _rewind(store: SessionStore, session_id: str, seq: int | None) -> str:
    store.rewind(session_id, seq or 0)
    return _page(session_id)


def _fork(store: SessionStore, session_id: str, seq: int | None) -> str:
    return _page(store.fork(session_id, seq).id)


def _archive(store: SessionStore, session_id: str, _: int | None) -> str:
    store.archive(session_id)
    return _page(session_id)


def _delete(store: SessionStore, session_id: str, _: int | None) -> str:
    store.delete(session_id)
    return "/"


ACTIONS: Mapping[str, Action] = {
    "reset": Action(
        "Reset the key", "Start a new session for this key? This one is archived.", None, _reset
    ),
    "compact": Action(
        "Compact",
        "Summarise everything but the last turns? Nothing is deleted.",
        "turns",
        _compact,
        default=4,
    ),
    "rewind": Action(
        "Rewind",
        "Move the session back to entry SEQ? Later entries stay as a branch.",
        "seq",
        _rewind,
    ),
    "fork": Action(
        "Fork",
        "Copy the active path (up to entry SEQ, or all of it) into a new session?",
        "seq",
        _fork,
        required=False,
    ),
    "archive": Action(
        "Archive",
        "Mark this session archived? No key points at it; its entries stay.",
        None,
        _archive,
    ),
    "delete": Action(
        "Delete", "Delete this session and all its entries? This cannot be undone.", None, _delete
    ),
}


def _action(request: Request) -> Action:
    if not request.app.state.settings.allow_writes:
        raise HTTPException(403, "this server is read-only (start it with --allow-writes)")
    found = ACTIONS.get(request.path_params["action"])
    if found is None:
        raise HTTPException(404, "no such action")
    return found


def confirm(request: Request) -> Response:
    action = _action(request)
    session_id = request.path_params["session_id"]
    return render(
        request,
        "confirm.html",
        {
            "session": store_of(request).get(session_id),
            "name": request.path_params["action"],
            "action": action,
            "value": request.query_params.get(action.field or "", action.default),
        },
    )


async def perform(request: Request) -> Response:
    action = _action(request)
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "a write from another site is refused")
    form = dict(parse_qsl((await _small_body(request)).decode("utf-8", "replace")))
    if not same_secret(form.get("csrf"), request.app.state.settings.csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    value = int_param(form, action.field, minimum=1) if action.field else None
    if action.field and action.required and value is None:
        raise InvalidInput("is needed", field=action.field)
    target = await _run(request, action, value)
    return RedirectResponse(target, status_code=303)


async def _small_body(request: Request) -> bytes:
    """The request's body, read no further than `MAX_FORM_BYTES`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "the form is too large")
    return bytes(body)


async def _run(request: Request, action: Action, value: int | None) -> str:
    return await run_in_threadpool(
        action.run, store_of(request), request.path_params["session_id"], value
    )


def action_routes() -> list[Route]:
    """The write actions' routes (refused unless writes are allowed)."""
    return [
        Route("/sessions/{session_id}/do/{action}", confirm, methods=["GET"], name="confirm"),
        Route("/sessions/{session_id}/do/{action}", perform, methods=["POST"], name="perform"),
    ]
