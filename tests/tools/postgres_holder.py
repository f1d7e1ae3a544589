"""Run by `test_throwaway_postgres.py` in a pytest of its own, to be interrupted.

Not collected by the suite (the name does not start with `test_`): the test
runs `pytest tests/tools/postgres_holder.py` with no DSN set, so the suite's
throwaway server starts; this test reports the postmaster and waits to be
interrupted or killed.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg


def test_hold_the_suite_server_until_interrupted(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as connection:
        row = connection.execute("SELECT current_setting('data_directory'), pg_backend_pid()")
        data, backend = row.fetchone() or ("", 0)
        postmaster = int((Path(data) / "postmaster.pid").read_text().split()[0])
        print(f"READY {postmaster} {backend} {data}", flush=True)
        signal.pause()  # until the parent interrupts or kills this run, connected
