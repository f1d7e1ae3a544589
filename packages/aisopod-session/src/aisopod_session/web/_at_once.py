"""Read routes served on the event loop's thread when the store can answer at once.

A page is a few bounded store reads and a template: about two milliseconds of
work, against a hand-off to a worker thread and back that costs a tenth to a
fifth of that on a quiet machine, and more on a busy one. On an SQLite file
the store can run reads that never wait (`SqliteBackend.inline`: a connection
of the thread's own that fails at once where SQLite would wait for a lock, and
stops past a bound on what it reads); a page served that way needs no worker
thread. Where the store cannot (a lock, a large read such as a search over
many hits or a whole transcript, a write, PostgreSQL, a store in memory), the
page runs on a worker thread as any sync route does. Nothing was changed when
a read stopped (it is a read), so the page starts again there from the top.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aisopod_session._store import SessionStore, engine_of
from aisopod_session.backends.sqlite import LATER, at_once

__all__ = ["read_route"]

Page = Callable[[Request], Response]


def _at_once(page: Page) -> Callable[[Request], Awaitable[Response]]:
    """`page` as an async endpoint: served at once when the store's reads can run
    on this thread without waiting (see the module docstring), else on a worker thread."""

    async def endpoint(request: Request) -> Response:
        store: SessionStore = request.app.state.store
        done = at_once(engine_of(store).backend, lambda: page(request))
        if done is not LATER:
            return done
        return await run_in_threadpool(page, request)  # a worker thread may wait, and read more

    endpoint.__name__ = endpoint.__qualname__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint


def read_route(path: str, page: Page, *, name: str | None = None) -> Route:
    """A GET route of a page or an API read, served as `_at_once` says."""
    return Route(path, _at_once(page), methods=["GET"], name=name or page.__name__)
