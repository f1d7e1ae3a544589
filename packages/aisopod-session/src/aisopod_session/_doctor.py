"""What `aisopod-session doctor` checks, and what it makes of the answers.

A store is examined for `problems` (the command fails: the database is
damaged or cannot be opened, a file others can read, WAL or foreign keys
off, migrations pending) and `warnings` (it does not: a folder others can
list, a store that can only be read, and why). A store that cannot be
opened, or that breaks while it is examined, is a report too: whatever was
learned, the error as a problem. Nothing here writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aisopod_session._errors import AisopodError

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["examine", "unopened"]


def unopened(url: str, error: BaseException) -> dict[str, Any]:
    """The report on a store that could not be opened: its URL, its file, the error."""
    facts: dict[str, Any] = {"url": _without_password(url), "opened": False}
    path = _sqlite_path(url)
    if path is not None and path.exists():
        facts["file_bytes"] = path.stat().st_size
    facts["problems"] = [str(error)]
    facts["warnings"] = []
    return facts


def examine(store: SessionStore, requested: str) -> dict[str, Any]:
    """The report on an open store (`requested`: its URL as given): its facts,
    `problems` and `warnings`."""
    facts: dict[str, Any] = {"url": store.url, "opened": True}
    problems: list[str] = []
    warnings: list[str] = []

    def schema() -> None:
        info = store.schema()
        facts["schema_version"] = info.version
        facts["latest_schema_version"] = info.latest

    def integrity() -> None:
        problems.extend(store.check_integrity())

    def settings() -> None:
        facts.update(store.diagnostics())

    steps: tuple[Callable[[], None], ...] = (integrity, settings, schema)
    for step in steps:
        # A store can open and still break on a page no open reads: each check
        # that breaks is a problem, and the others still run.
        try:
            step()
        except (AisopodError, OSError) as err:
            if str(err) not in problems:
                problems.append(str(err))
    if facts.get("backend") == "sqlite":
        _sqlite_settings(facts, problems, warnings)
    if "schema_version" in facts and facts["schema_version"] < facts["latest_schema_version"]:
        problems.append("schema migrations are pending (aisopod-session migrate --apply)")
    if facts.get("read_only"):
        warnings.append(_read_only_explained(facts, requested))
    facts["problems"] = problems
    facts["warnings"] = warnings
    return facts


def _sqlite_settings(facts: dict[str, Any], problems: list[str], warnings: list[str]) -> None:
    # A store SQLite cannot write is read as an immutable file, which reports
    # `delete` whatever the file's mode: only a writable store's mode tells.
    if not facts.get("read_only") and str(facts.get("journal_mode")).lower() != "wal":
        problems.append(f"journal_mode is {facts.get('journal_mode')}, not wal")
    if facts.get("foreign_keys") != 1:
        problems.append("foreign_keys is off")
    path = _sqlite_path(str(facts["url"]))
    folder = str(path.parent) if path is not None else None
    for name, mode in facts.get("permissions", {}).items():
        if not int(mode, 8) & 0o077:
            continue
        if name == folder:
            # The files are what hold sessions; a folder others can list shows
            # only their names (stores are often kept in shared folders).
            warnings.append(f"{name} can be listed by others ({mode}); the files are private")
        else:
            problems.append(f"{name} is readable by others ({mode})")


def _read_only_explained(facts: dict[str, Any], requested: str) -> str:
    """Why a store can only be read, and what that means for the commands."""
    path = _sqlite_path(str(facts["url"]))
    if "read_only=" in requested.partition("?")[2]:
        why = "it was opened with ?read_only=1"
    elif path is None:
        why = "the server makes transactions read-only (a standby, or the role's default)"
    elif _on_read_only_filesystem(path.parent):
        why = f"{path.parent} is on a read-only filesystem"
    elif not os.access(path, os.W_OK):
        why = f"{path} is not writable by this user"
    else:
        why = (
            f"{path.parent} is not writable by this user (SQLite writes -wal and -shm files there)"
        )
    return (
        f"read-only: {why}; reading works, every write (import, restore, reset, maintain"
        " --enforce, migrate --apply, ...) is refused"
    )


def _without_password(url: str) -> str:
    """The URL as it may be shown: a PostgreSQL password becomes `***`."""
    if not url.startswith(("postgresql:", "postgres:")):
        return url
    try:
        from aisopod_session.backends.postgres import redact
    except ImportError:  # no driver: nothing was opened, and nothing is shown of the user
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return redact(url)


def _sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite://` URL (`None` for PostgreSQL or an in-memory store)."""
    if not url.startswith("sqlite://") or url.endswith(":memory:"):
        return None
    return Path(url[len("sqlite://") :].split("?", 1)[0])


def _on_read_only_filesystem(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
