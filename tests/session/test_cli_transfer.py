"""Moving sessions with the command: a restore that stops says how to finish,
imports at once end as one after the other, progress shows on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisopod_session import open_store
from aisopod_session.cli import main
from aisopod_session.transfer import session_checksum
from tests.session.cli_process import COMMAND, EXAMPLE, ROOT, environment
from tests.session.postgres_schema import temporary_schema

MAIN_TRANSCRIPT = EXAMPLE / "sessions" / "3f9c2a7e-5b1d-4c8e-9a06-2d7f41e8b5c3.jsonl"


@pytest.fixture(name="empty", params=["sqlite", "postgres"])
def empty_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store's URL (the store is made by the first write)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'sessions.db'}"
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def test_a_restore_that_meets_a_session_says_what_it_wrote_and_how_to_finish(
    empty: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite://{tmp_path / 'source.db'}"
    assert main(["--db", source, "import", str(EXAMPLE), "--json"]) == 0
    dump = tmp_path / "all.jsonl"
    assert main(["--db", source, "dump", "-o", str(dump)]) == 0
    order = [
        json.loads(line)["id"]
        for line in dump.read_bytes().splitlines()
        if json.loads(line).get("kind") == "session"
    ]
    one = tmp_path / "third.jsonl"
    assert main(["--db", source, "export", order[2], "--format", "native", "-o", str(one)]) == 0
    assert main(["--db", empty, "restore", str(one)]) == 0
    capsys.readouterr()

    assert main(["--db", empty, "restore", str(dump)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"a session '{order[2]}' is already in the store" in err
    assert "--skip-existing" in err
    assert f"2 sessions were written whole before it: {order[0]}, {order[1]}" in err

    assert main(["--db", empty, "restore", str(dump), "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("restored 2 sessions")
    assert "3 sessions of the dump were already in the store" in captured.err
    with open_store(source) as a, open_store(empty) as b:
        for session_id in order:
            assert session_checksum(a, session_id) == session_checksum(b, session_id)


def test_two_imports_at_once_end_as_one_after_the_other(empty: str) -> None:
    """Both succeed; the store holds each session once, whoever wrote it."""
    runs = [
        subprocess.Popen(
            [*COMMAND, "--db", empty, "import", str(EXAMPLE), "--json"],
            env=environment(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    assert sorted(json.loads(outputs[0][0])) == sorted(json.loads(outputs[1][0]))
    with open_store(empty) as store:
        assert len(store.list().sessions) == 5


def test_a_folder_imported_after_one_of_its_transcripts_binds_its_keys(
    empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", empty, "import", str(MAIN_TRANSCRIPT), "--json"]) == 0
    (alone,) = json.loads(capsys.readouterr().out)
    assert main(["--db", empty, "import", str(EXAMPLE), "--json"]) == 0
    assert alone in json.loads(capsys.readouterr().out)
    with open_store(empty) as store:
        current = store.current("agent:main:main")
        assert current is not None
        assert current.id == alone
        assert len(store.list().sessions) == 5


def _on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the command with stderr on a pseudo-terminal; its exit code and what the
    terminal showed."""
    controller, terminal = pty.openpty()
    run = subprocess.Popen(
        [*COMMAND, *args],
        env=environment(COLUMNS="120", TERM="xterm"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return run.wait(timeout=60), shown.decode(errors="replace")


def test_long_work_shows_progress_in_entries_on_a_terminal_only(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'sessions.db'}"
    code, shown = _on_a_terminal("--db", db, "import", str(EXAMPLE))
    assert code == 0, shown
    assert "importing main" in shown
    assert "entries" in shown
    code, shown = _on_a_terminal("--db", db, "copy", "--to", f"sqlite://{tmp_path / 'copy.db'}")
    assert code == 0, shown
    with open_store(db) as store:
        total = sum(agent.entries for agent in store.stats())
    assert f"{total}/{total}" in shown  # a bar with its total: the time left is known
    piped = subprocess.run(
        [*COMMAND, "--db", db, "dump", "-o", str(tmp_path / "d.jsonl")],
        env=environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert piped.stderr.startswith("dumped 5 sessions")
    assert "\x1b" not in piped.stderr
    assert "\r" not in piped.stderr
