"""The `aisopod-session` command, end to end on real stores and the example data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import REMOVE, open_store
from aisopod_session._store import engine_of
from aisopod_session.cli import build_parser, main
from aisopod_session.transfer import session_checksum
from aisopod_shared import Message

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "openclaw" / "main"


def run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["--db", db, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> Any:
    code, out, err = run(capsys, db, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(name="db")
def db_fixture(shared_database_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """A store (SQLite file or PostgreSQL) with the example OpenClaw agent imported."""
    code, out, err = run(capsys, shared_database_url, "import", str(EXAMPLE))
    assert code == 0, err
    assert len(out.splitlines()) == 2 + 5  # a table: header, rule, a row per session
    return shared_database_url


def test_import_prints_the_sessions_it_made(shared_database_url: str, capsys: Any) -> None:
    ids = run_json(capsys, shared_database_url, "import", str(EXAMPLE))
    assert len(ids) == 5
    again, out, err = run(capsys, shared_database_url, "import", str(EXAMPLE))
    assert again == 0
    assert sorted(line.split()[0] for line in out.splitlines()[2:]) == sorted(ids)
    assert "5 of these sessions were already in the store" in err
    code, _, err = run(capsys, shared_database_url, "import", "/no/such/folder")
    assert code == 1
    assert err.startswith("aisopod-session: error: ")
    assert "Traceback" not in err


def test_list_and_show(db: str, capsys: Any) -> None:
    listed = run_json(capsys, db, "list")
    assert {s["key"] for s in listed["sessions"]} >= {"agent:main:main"}
    assert set(listed["sessions"][0]) >= {"id", "key", "status", "entries", "tokens", "updated_at"}
    code, out, _ = run(capsys, db, "list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "KEY", "STATUS"]
    by_key = run_json(capsys, db, "show", "agent:main:main")
    by_id = run_json(capsys, db, "show", by_key["id"])
    assert by_key == by_id
    assert by_key["title"] == "Lisbon weekend"


@pytest.fixture(name="with_state")
def with_state_fixture(db: str) -> dict[str, Any]:
    """The example's main chat given a user and state: "step" set at entry 17, then
    changed and "draft" removed at entry 19; where each change was, by seq."""
    with open_store(db) as store:
        session = store.get_or_create("agent:main:main")
        assert session.entry_count == 16
        store.patch(session.id, user_id="telegram:5550123")
        store.update_state(
            session.id, {"step": "dates", "draft": {"days": [9, 10]}, "user:lang": "pt"}
        )
        store.append(
            session.id,
            [Message.user("two adults")],
            state={"step": "people", "draft": REMOVE, "agent:tz": "Europe/Lisbon", "temp:x": 1},
        )
        return {"id": session.id, "first": 17, "second": 19}


def test_state_prints_keys_and_compact_json_values(
    db: str, with_state: dict[str, Any], capsys: Any
) -> None:
    code, out, err = run(capsys, db, "state", "agent:main:main")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "VALUE"]
    assert lines[1].startswith("---")
    assert sorted(line.split(maxsplit=1) for line in lines[2:]) == [
        ["agent:tz", '"Europe/Lisbon"'],
        ["step", '"people"'],
        ["user:lang", '"pt"'],
    ]
    assert len({line.index('"') for line in lines[2:]}) == 1  # one aligned VALUE column
    expected = {"step": "people", "user:lang": "pt", "agent:tz": "Europe/Lisbon"}
    assert run_json(capsys, db, "state", "agent:main:main") == expected
    assert run_json(capsys, db, "state", with_state["id"]) == expected  # by id as by key


def test_state_at_a_past_entry(db: str, with_state: dict[str, Any], capsys: Any) -> None:
    """--at SEQ gives the session's keys as they were; user: and agent: keys are current."""
    shared = {"user:lang": "pt", "agent:tz": "Europe/Lisbon"}
    first = with_state["first"]
    assert run_json(capsys, db, "state", "agent:main:main", "--at", str(first)) == {
        "step": "dates",
        "draft": {"days": [9, 10]},
        **shared,
    }
    assert run_json(capsys, db, "state", "agent:main:main", "--at", str(first - 1)) == shared
    assert run_json(capsys, db, "state", "agent:main:main", "--at", "0") == shared
    code, out, _ = run(capsys, db, "state", "agent:main:main", "--at", str(first))
    assert code == 0
    assert ["draft", '{"days":[9,10]}'] in [line.split(maxsplit=1) for line in out.splitlines()]


@pytest.mark.parametrize("seq", ["20", "-1"])
def test_state_at_no_such_entry_is_a_one_line_error_naming_seq(
    db: str, with_state: dict[str, Any], capsys: Any, seq: str
) -> None:
    code, out, err = run(capsys, db, "state", "agent:main:main", "--at", seq)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("aisopod-session: error: SEQ: ")
    assert "19 entries" in err
    assert seq in err


def test_show_includes_the_user_and_the_state(
    db: str, with_state: dict[str, Any], capsys: Any
) -> None:
    shown = run_json(capsys, db, "show", "agent:main:main")
    assert shown["user"] == "telegram:5550123"
    assert shown["state"] == {"step": "people", "user:lang": "pt", "agent:tz": "Europe/Lisbon"}
    code, out, _ = run(capsys, db, "show", "agent:main:main")
    assert code == 0
    lines = {line.split(maxsplit=1)[0]: line.split(maxsplit=1)[-1] for line in out.splitlines()}
    assert lines["user"] == "telegram:5550123"
    assert json.loads(lines["state"]) == shown["state"]
    assert out.splitlines()[-1].split()[0] == "state"  # after the fields
    other = run_json(capsys, db, "show", "agent:main:cron:daily-digest")
    assert (other["user"], other["state"]) == (None, {"agent:tz": "Europe/Lisbon"})


def test_list_by_user(db: str, with_state: dict[str, Any], capsys: Any) -> None:
    listed = run_json(capsys, db, "list", "--user", "telegram:5550123")["sessions"]
    assert [(s["id"], s["user"]) for s in listed] == [(with_state["id"], "telegram:5550123")]
    assert run_json(capsys, db, "list", "--user", "telegram:1")["sessions"] == []
    assert len(run_json(capsys, db, "list")["sessions"]) == 5
    code, out, _ = run(capsys, db, "list", "--user", "telegram:5550123")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [
        [with_state["id"], "agent:main:main"]
    ]


def test_history_context_and_search(db: str, capsys: Any) -> None:
    history = run_json(capsys, db, "history", "agent:main:main", "--last", "5")
    assert [e["seq"] for e in history["entries"]] == [12, 13, 14, 15, 16]
    context = run_json(capsys, db, "context", "agent:main:main")
    assert context["messages"]
    hits = run_json(capsys, db, "search", "deploy")["hits"]
    assert hits
    assert {"session_id", "seq", "snippet", "key"} <= set(hits[0])
    code, out, _ = run(capsys, db, "search", "deploy")
    assert code == 0
    assert "[deploy]" in out.lower() or "[deploy" in out.lower()
    code, _, err = run(capsys, db, "search", '"unclosed')
    assert code == 1
    assert "quote" in err


def test_unknown_sessions_are_one_line_errors(db: str, capsys: Any) -> None:
    code, out, err = run(capsys, db, "show", "agent:main:nobody")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    with pytest.raises(Exception, match="nobody"):
        main(["--db", db, "--debug", "show", "agent:main:nobody"])


def test_export_then_import_gives_the_same_session(db: str, capsys: Any, tmp_path: Path) -> None:
    source = run_json(capsys, db, "show", "agent:main:main")
    out = tmp_path / "main.jsonl"
    code, _, err = run(capsys, db, "export", "agent:main:main", "-o", str(out))
    assert code == 0, err
    assert (out.stat().st_mode & 0o777) == 0o600
    other = f"sqlite:///{tmp_path / 'other.db'}"
    ids = run_json(capsys, other, "import", str(out), "--key", "agent:main:main")
    assert ids == [source["id"]]
    copied = run_json(capsys, other, "show", "agent:main:main")
    assert (copied["entries"], copied["tokens"]) == (source["entries"], source["tokens"])


def test_dump_restore_and_copy_keep_every_session_exactly(
    db: str, capsys: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "all.jsonl"
    code, _, err = run(capsys, db, "dump", "-o", str(dump))
    assert code == 0, err
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    code, out, err = run(capsys, restored, "restore", str(dump))
    assert code == 0, err
    assert out.startswith("restored 5 sessions")
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    report = run_json(capsys, db, "copy", "--to", copy)
    assert (report["sessions"], report["copied"]) == (5, 5)
    resumed = run_json(capsys, db, "copy", "--to", copy)
    assert (resumed["copied"], resumed["skipped"]) == (0, 5)
    source, a, b = open_store(db), open_store(restored), open_store(copy)
    for session, _ in engine_of(source).stream_sessions():
        expected = session_checksum(source, session.id)
        assert session_checksum(a, session.id) == expected
        assert session_checksum(b, session.id) == expected
    for store in (source, a, b):
        store.close()


def test_reset_compact_rewind_fork(db: str, capsys: Any) -> None:
    compacted_id = run_json(capsys, db, "show", "agent:main:main")["id"]
    compacted = run_json(capsys, db, "compact", "agent:main:main", "--keep-turns", "1")
    assert compacted["compacted"]
    code, out, _ = run(capsys, db, "rewind", "agent:main:main", "3")
    assert code == 0
    assert "seq 3" in out
    code, out, _ = run(capsys, db, "fork", "agent:main:main", "--at", "2")
    assert code == 0
    fork = run_json(capsys, db, "show", out.strip())
    assert fork["entries"] == 2
    reset = run_json(capsys, db, "reset", "agent:main:main")
    assert reset["archived"] == compacted_id
    assert run_json(capsys, db, "show", "agent:main:main")["id"] == reset["started"]


def test_maintain_stats_migrate_doctor(db: str, capsys: Any) -> None:
    stats = run_json(capsys, db, "stats")
    assert stats[0]["agent_id"] == "main"
    assert stats[0]["sessions"] == 5
    warned = run_json(capsys, db, "maintain", "--prune-after", "30d")
    assert warned["mode"] == "warn"
    assert warned["removed"] == 0
    assert warned["removals"]  # the examples are from early 2026
    enforced = run_json(capsys, db, "maintain", "--prune-after", "30d", "--enforce")
    assert enforced["removed"] == len(warned["removals"])
    migrations = run_json(capsys, db, "migrate")
    assert migrations["version"] == migrations["latest"]
    doctor = run_json(capsys, db, "doctor")
    assert doctor["problems"] == []
    code, _, err = run(capsys, db, "maintain", "--prune-after", "soon")
    assert code == 1
    assert "--prune-after" in err


def test_doctor_reports_a_file_others_can_read(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    open_store(db).close()
    (tmp_path / "s.db").chmod(0o644)
    code, out, _ = run(capsys, db, "doctor")
    assert code == 1
    assert "readable by others" in out


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    choices = actions[0].choices
    assert isinstance(choices, dict)
    for name, sub in choices.items():
        assert "example:" in sub.format_help(), name


def test_the_console_script_runs_quietly_when_piped(tmp_path: Path) -> None:
    env = {**os.environ, "AISOPOD_SESSION_DB": f"sqlite:///{tmp_path / 'piped.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "aisopod_session", "import", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "aisopod_session", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert len(json.loads(listed.stdout)["sessions"]) == 5
