"""Numbered schema migrations: position in the list = schema version.

Each backend lists its own statements for each version; both lists must stay
the same length and mean the same schema. A migration runs in the
transaction that opens the store and is recorded in `schema_migrations`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from aisopod_session._errors import SchemaVersionError
from aisopod_shared import logger

if TYPE_CHECKING:
    from aisopod_session.backends._sql import SqlTx

__all__ = ["Migration", "apply_migrations"]


@attrs.frozen
class Migration:
    """One step of the schema: a name for the record and the statements to run."""

    name: str
    statements: tuple[str, ...]


def apply_migrations(tx: SqlTx, migrations: Sequence[Migration], *, integer: str) -> None:
    """Bring the schema up to the newest version, inside the caller's transaction.

    `integer` is the backend's 64-bit integer type, for the record's times.

    Raises:
        SchemaVersionError: when the database is newer than `migrations`.
    """
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        f" name TEXT NOT NULL, applied_at {integer} NOT NULL)"
    )
    row = tx.execute("SELECT max(version) FROM schema_migrations").fetchone()
    current = int(row[0] or 0)
    if current > len(migrations):
        raise SchemaVersionError(current, len(migrations))
    for version, migration in enumerate(migrations[current:], start=current + 1):
        logger.info("applying schema migration {} ({})", version, migration.name)
        for statement in migration.statements:
            tx.execute(statement)
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, migration.name, time.time_ns() // 1000),
        )
