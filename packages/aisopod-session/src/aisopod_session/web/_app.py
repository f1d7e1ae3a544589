"""The app factory: routes, templates, guards and error pages over one store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from aisopod_session._store import SessionStore
from aisopod_session.web._actions import action_routes
from aisopod_session.web._api import api_routes
from aisopod_session.web._errors import ERROR_HANDLERS
from aisopod_session.web._pages import page_routes
from aisopod_session.web._security import AccessGuard, SecurityHeaders, new_secret
from aisopod_session.web._templates import templates

__all__ = ["LOOPBACK_HOSTS", "WebSettings", "create_app"]

_HERE = Path(__file__).parent

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""Host headers a loopback server answers: any other name reaching it is a DNS
rebinding attempt (a web page's own name pointed at 127.0.0.1)."""


@attrs.frozen
class WebSettings:
    """How the app serves its store.

    `token`: when set, every request must carry it (the server listens beyond
    this machine). `hosts`: the Host names answered (`None`: any, for a server
    behind a name of its own). `allow_writes`: offer and accept the write
    actions. `csrf`: the secret the write forms carry (fresh per app).
    """

    allow_writes: bool = False
    token: str | None = None
    hosts: Sequence[str] | None = LOOPBACK_HOSTS
    csrf: str = attrs.field(factory=new_secret, repr=False)


def create_app(store: SessionStore, settings: WebSettings | None = None) -> Starlette:
    """An ASGI app showing `store` (scope it with `store.for_agent(...)` first to show
    one agent only)."""
    settings = settings or WebSettings()
    app = Starlette(
        routes=[
            *page_routes(),
            *action_routes(),
            *api_routes(),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(AccessGuard, token=settings.token, hosts=settings.hosts),
        ],
        exception_handlers=ERROR_HANDLERS,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.templates = templates()
    return app
