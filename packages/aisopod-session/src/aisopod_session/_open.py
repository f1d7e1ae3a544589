"""Opening a store from a URL."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from aisopod_session._async import AsyncSessionStore
from aisopod_session._entries import DEFAULT_MAX_PAYLOAD_BYTES
from aisopod_session._errors import StoreNotFound
from aisopod_session._store import SessionStore
from aisopod_session._validate import check_int
from aisopod_session.backends._sql import Backend
from aisopod_shared import Clock, InvalidInput

__all__ = [
    "DEFAULT_DB_ENV",
    "URL_FORMS",
    "default_url",
    "open_async_store",
    "open_backend",
    "open_store",
]

DEFAULT_DB_ENV: Final = "AISOPOD_SESSION_DB"
"""The environment variable that names the default store (a URL or a file path)."""


URL_FORMS: Final = (
    "sqlite:///absolute/path.db, sqlite:///:memory:, postgresql://user@host/db or a file path"
)
"""The forms a store's address takes, for messages that refuse another."""

_SCHEME_ONLY: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!//)")
"""`sqlite:/abs/path.db`, `postgresql:db`: a scheme without `//`. Taken as a
file path, it would make a folder named `sqlite:`; a file whose name has a
colon is still reachable as `./name:with-colon.db`."""


def default_url() -> str:
    """`$AISOPOD_SESSION_DB` if set, else the embedded default `~/.aisopod/sessions.db`."""
    configured = os.environ.get(DEFAULT_DB_ENV, "").strip()
    if configured:
        return configured
    return f"sqlite://{Path.home() / '.aisopod' / 'sessions.db'}"


def open_backend(
    url: str | os.PathLike[str] | None = None, *, create: bool = True, **options: Any
) -> Backend:
    """The backend a URL names (see `open_store`)."""
    if url is None:
        url = default_url()
    text = os.fspath(url)
    if "://" not in text:
        if text != ":memory:" and _SCHEME_ONLY.match(text):
            raise InvalidInput(f"{text!r} is not a store URL; expected {URL_FORMS}", field="url")
        path = text if text == ":memory:" else str(Path(text).expanduser())
        return _sqlite(path, {}, options, create=create)
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise InvalidInput(
                "a SQLite URL is sqlite:///absolute/path.db or sqlite:///:memory:", field="url"
            )
        if path == "/:memory:":
            return _sqlite(":memory:", query, options, create=create)
        # sqlite:///abs/path and sqlite:////abs/path both mean /abs/path.
        return _sqlite("/" + path.lstrip("/"), query, options, create=create)
    if parts.scheme in ("postgresql", "postgres"):
        return _postgres(text, options, create=create)
    raise InvalidInput(f"unknown store scheme {parts.scheme!r}; expected {URL_FORMS}", field="url")


def _postgres(url: str, options: dict[str, Any], *, create: bool) -> Backend:
    try:
        from aisopod_session.backends.postgres import PostgresBackend
    except ImportError as err:  # the optional extra is not installed
        raise InvalidInput(
            "PostgreSQL stores need the postgres extra: pip install 'aisopod-session[postgres]'",
            field="url",
        ) from err
    known = {"schema", "pool_min", "pool_max", "pool_timeout", "migrate", "read_only"}
    unknown = set(options) - known
    if unknown:
        raise InvalidInput(f"unknown option(s): {', '.join(sorted(unknown))}", field="options")
    try:
        if create:
            return PostgresBackend(url, **options)
        # Look before migrating: a database (or schema) without the store's
        # tables is not made into a store by a reader.
        probe = PostgresBackend(url, **{**options, "migrate": False})
        try:
            version = probe.schema_version()
        except BaseException:
            probe.close()
            raise
        if version == 0:
            probe.close()
            raise StoreNotFound(probe.url)
        if version == len(probe.migrations) or options.get("migrate") is False:
            return probe
        probe.close()
        return PostgresBackend(url, **options)
    except ValueError as err:
        raise InvalidInput(str(err), field="url") from err


def _sqlite(path: str, query: dict[str, str], options: dict[str, Any], *, create: bool) -> Backend:
    from aisopod_session.backends.sqlite import SqliteBackend

    synchronous = str(options.pop("synchronous", query.pop("synchronous", "FULL"))).upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise InvalidInput("must be FULL or NORMAL", field="synchronous")
    migrate = bool(options.pop("migrate", True))
    read_only = flag(options.pop("read_only", query.pop("read_only", False)), "read_only")
    max_pages = options.pop("max_pages", query.pop("max_pages", None))
    if max_pages is not None:
        try:
            max_pages = int(max_pages)
        except (TypeError, ValueError) as err:
            raise InvalidInput("must be a number of pages", field="max_pages") from err
    timeout = options.pop("busy_timeout", query.pop("busy_timeout", 30.0))
    try:
        busy_timeout = float(timeout)
    except (TypeError, ValueError) as err:
        raise InvalidInput("must be a number of seconds", field="busy_timeout") from err
    if query:
        raise InvalidInput(f"unknown SQLite option(s): {', '.join(sorted(query))}", field="url")
    if options:
        raise InvalidInput(f"unknown option(s): {', '.join(sorted(options))}", field="options")
    if not create and path != ":memory:" and not os.path.lexists(path):
        raise StoreNotFound(f"sqlite://{Path(path).absolute()}")
    return SqliteBackend(
        None if path == ":memory:" else path,
        synchronous=synchronous,  # type: ignore[arg-type]
        busy_timeout=busy_timeout,
        migrate=migrate,
        max_pages=max_pages,
        read_only=read_only,
    )


def flag(value: object, field: str) -> bool:
    """A yes/no option, given as a bool or as URL text (`1`, `true`, `yes`, `0`, ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"must be true or false, not {value!r}", field=field)


def open_store(
    url: str | os.PathLike[str] | None = None,
    *,
    clock: Clock | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    create: bool = True,
    **options: Any,
) -> SessionStore:
    """Open (creating and migrating as needed) the store at `url`.

    URLs: `sqlite:///absolute/path.db`, `sqlite:///:memory:`, a plain file
    path, `postgresql://user@host/db` (the `postgres` extra), or `None` for
    the default (`$AISOPOD_SESSION_DB`, else `~/.aisopod/sessions.db`).

    PostgreSQL options (keyword or URL query): `schema` (a schema of the
    store's own, created on first open), `pool_min`, `pool_max` (connections,
    default 1 and 10), `pool_timeout` (seconds to wait for a connection).

    `migrate=False` opens without upgrading the schema (to look at its
    version, as `aisopod-session migrate` does); such a store is not for use.

    `create=False` opens only a store that exists: a SQLite file that is not
    there (nor its folder) is not made, and a PostgreSQL database or schema
    without the store's tables is left as it is; both raise `StoreNotFound`.

    `read_only=True` (both backends; `?read_only=1` in the URL) opens a store
    that never writes: reads work, and every write raises `StoreReadOnly`. A
    SQLite file or folder this process cannot write is opened so by itself.
    Opening an existing store writes nothing unless its schema needs upgrading,
    and a SQLite file that is not a store (another application's) is refused
    untouched.

    SQLite options (keyword or URL query): `synchronous` — `FULL` (the
    default: an acknowledged append survives a power cut) or `NORMAL` (faster;
    in WAL mode still never corrupt, but the last appends can be lost on power
    loss); `busy_timeout` in seconds (default 30); `max_pages`, a cap on the
    file's size in pages (writes past it raise `StoreFull`).

    Raises:
        InvalidInput: for a URL or option that is not understood.
        StoreNotFound: with `create=False`, when there is no store at `url`.
        SchemaVersionError: when the database is newer than this code.
        StoreReadOnly: when a read-only store needs a schema upgrade first.
        StoreUnavailable: when the database cannot be opened, or is not a store.
    """
    check_int(max_payload_bytes, "max_payload_bytes", minimum=1)  # before anything is opened
    backend = open_backend(url, create=create, **options)
    return SessionStore.over(backend, clock=clock, max_payload_bytes=max_payload_bytes)


def open_async_store(
    url: str | os.PathLike[str] | None = None,
    *,
    clock: Clock | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_workers: int = 8,
    **options: Any,
) -> AsyncSessionStore:
    """Open the store at `url` for use from asyncio (see `open_store` for URLs).

    Opening runs the schema migrations synchronously; do it at start-up.
    `max_workers` caps the threads that run its calls (appends have one more,
    the group committer).
    """
    check_int(max_workers, "max_workers", minimum=1)
    store = open_store(url, clock=clock, max_payload_bytes=max_payload_bytes, **options)
    return AsyncSessionStore(store, max_workers=max_workers)
