"""The suite's throwaway PostgreSQL: starts, stops, restarts, and never outlives its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]
HOLDER = "tests/tools/postgres_holder.py"


def _gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether process `pid` is gone (or a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            state = "?"
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def _processes_using(data: Path) -> list[str]:
    """Command lines of the processes whose arguments name `data` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data) in args and "postgres" in args:
            found.append(args)
    return found


def test_a_server_restarted_after_an_immediate_stop_keeps_every_commit(
    own_postgres: ThrowawayPostgres,
) -> None:
    with psycopg.connect(own_postgres.dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (n int)")
        connection.execute("INSERT INTO kept SELECT generate_series(1, 1000)")
    first = own_postgres.pid
    own_postgres.stop("immediate")
    assert _gone(first)
    assert not own_postgres.running
    own_postgres.start()
    assert own_postgres.pid != first
    with psycopg.connect(own_postgres.dsn) as connection:
        assert connection.execute("SELECT count(*) FROM kept").fetchone() == (1000,)
    print(f"restarted on port {own_postgres.port}: 1000 committed rows recovered")


def test_closing_a_server_stops_it_and_deletes_its_folder(tmp_path: Path) -> None:
    server = ThrowawayPostgres(tmp_path / "server")
    server.start()
    pid = server.pid
    server.close()
    assert _gone(pid)
    assert not (tmp_path / "server").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("interruption", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_no_server_outlives_an_interrupted_test_run(interruption: signal.Signals) -> None:
    """Ctrl-C runs the fixtures' teardown; kill -9 runs nothing, and the guard stops
    the server anyway."""
    env = {k: v for k, v in os.environ.items() if k != "AISOPOD_TEST_POSTGRES_DSN"}
    run = subprocess.Popen(
        # In this process (-n 0): its output, READY included, comes back on stdout.
        [sys.executable, "-m", "pytest", "-sq", "-n", "0", "-p", "no:cacheprovider", HOLDER],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C at its default in the held run, whatever this run inherited (a shell
        # starts background jobs with SIGINT ignored, and children keep that).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert run.stdout is not None
    seen = []
    for line in run.stdout:
        seen.append(line)
        if line.startswith("READY "):
            break
    else:
        pytest.fail("the held run never reported its server: " + "".join(seen))
    _, postmaster, backend, data = line.split()
    run.send_signal(interruption)
    run.communicate(timeout=60)
    assert _gone(int(postmaster)), f"postmaster {postmaster} outlived the run"
    assert _gone(int(backend)), f"backend {backend} outlived the run"
    assert _processes_using(Path(data)) == []
    print(f"{interruption.name}: postmaster {postmaster} and backend {backend} gone")
