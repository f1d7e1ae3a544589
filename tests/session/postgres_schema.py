"""A PostgreSQL schema of a test's own, dropped after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql


def with_schema(dsn: str, schema: str) -> str:
    """The store URL of `schema` in the database `dsn` names."""
    parts = urlsplit(dsn)
    query = f"{parts.query}&{urlencode({'schema': schema})}".lstrip("&")
    return urlunsplit(parts._replace(query=query))


@contextmanager
def temporary_schema(dsn: str, schema: str) -> Iterator[str]:
    """Yield a store URL for a fresh schema; drop the schema (and everything in it) after."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_schema(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
