"""A web UI over any store: `aisopod-session serve` (the `web` extra).

Pages are rendered on the server from the store's public API (no SQL here),
so every backend works and a handle scoped to one agent shows that agent
alone. Every string from a store is untrusted: templates escape it, control
and direction-changing characters are shown as their code points, responses
carry a Content-Security-Policy without inline script, and writes need
`--allow-writes`, a POST and a CSRF token.

    from aisopod_session import open_store
    from aisopod_session.web import create_app

    app = create_app(open_store("sqlite:///sessions.db"))  # an ASGI app
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aisopod_session.web._app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported when asked for: the command line imports `web._command` to register
    # `serve`, and every other command must not pay for (or need) Starlette.
    if name in __all__:
        from aisopod_session.web._app import WebSettings, create_app

        return {"WebSettings": WebSettings, "create_app": create_app}[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
