"""`aisopod-session serve`: the web UI on a local port.

Registered by the command line; imports Starlette and uvicorn only when the
command runs, so the other commands neither pay for nor need the `web` extra.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import Any, TextIO

from aisopod_session._errors import ConfigError, InvalidInput
from aisopod_session._store import SessionStore

__all__ = ["add_serve_command", "cmd_serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def cmd_serve(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    """Serve the store until interrupted."""
    try:
        import uvicorn

        from aisopod_session.web._app import LOOPBACK_HOSTS, WebSettings, create_app
        from aisopod_session.web._security import is_loopback, new_secret
    except ImportError as err:
        raise ConfigError(
            f"the web UI needs the web extra (pip install 'aisopod-session[web]'): {err}",
            field="serve",
        ) from err
    if not 0 <= args.port < 65536:
        raise InvalidInput("must be a port number, 0 to 65535 (0: any free port)", field="port")
    local = is_loopback(args.host)
    token = args.token or (None if local else new_secret())
    settings = WebSettings(
        allow_writes=args.allow_writes, token=token, hosts=LOOPBACK_HOSTS if local else None
    )
    scoped = store.for_agent(args.agent) if args.agent else store
    app = create_app(scoped, settings)
    # Listening before the address is printed: whoever opens it finds the server up,
    # a port in use is this command's error, and port 0 prints the port it got.
    listening = _listen(args.host, args.port)
    port = listening.getsockname()[1]
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    address = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    mode = "read and write" if args.allow_writes else "read-only"
    scope = f", agent {scoped.agent_id} only" if args.agent else ""  # as the store spells it
    print(f"aisopod-session: serving {store.url} ({mode}{scope}) at {address}", file=out)
    out.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listening])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host.strip("[]"), port))
    except OSError as err:
        listening.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}", field="port") from err
    listening.listen(128)
    return listening


def add_serve_command(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `serve` to the command line's subcommands (`command` makes a subcommand)."""
    p = command(
        sub,
        "serve",
        cmd_serve,
        "show the store in a web browser (read-only unless --allow-writes)",
        "aisopod-session serve --db sqlite:///sessions.db --agent main",
        reads=True,
    )
    # Also after the command (`serve --db URL`); given before it, it stands.
    p.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help="the store")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument("--agent", metavar="ID", help="show this agent's sessions only")
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="offer reset, compact, rewind, fork, archive and delete (each confirmed)",
    )
    p.add_argument(
        "--token",
        help="the access token every request must carry (made up and printed when"
        " listening beyond this machine without one)",
    )
