"""Numbered schema migrations: position in the list = schema version.

Each backend lists its own statements for each version; both lists must stay
the same length and mean the same schema. A migration runs in the
transaction that opens the store and is recorded in `schema_migrations`.
"""

from __future__ import annotations

import attrs

__all__ = ["Migration"]


@attrs.frozen
class Migration:
    """One step of the schema: a name for the record and the statements to run."""

    name: str
    statements: tuple[str, ...]
