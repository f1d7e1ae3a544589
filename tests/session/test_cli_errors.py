"""The command as people use it: reads create nothing, every error is one line
naming the command's own arguments, Ctrl-C says what was written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from aisopod_session import (
    InvalidInput,
    SessionNotFound,
    SessionStore,
    StoreNotFound,
    open_store,
)
from aisopod_session.cli import main
from aisopod_shared import Message
from tests.session.cli_process import (
    COMMAND,
    EXAMPLE,
    ROOT,
    cli,
    ctrl_c_reaches_it,
    environment,
    one_line_error,
)
from tests.session.postgres_schema import temporary_schema

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(name="no_store", params=BACKENDS)
def no_store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a store that does not exist: a file in folders that do not exist,
    or a PostgreSQL schema without the store's tables."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'no' / 'such' / 'sessions.db'}"
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def store_exists(url: str) -> bool:
    if url.startswith("sqlite:"):
        return Path(urlsplit(url).path).parent.parent.exists()
    schema = dict(p.split("=") for p in urlsplit(url).query.split("&"))["schema"]
    with psycopg.connect(urlunsplit(urlsplit(url)._replace(query="")), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


READS = [
    ["list"],
    ["show", "agent:main:main"],
    ["state", "agent:main:main"],
    ["history", "agent:main:main"],
    ["context", "agent:main:main"],
    ["search", "hello"],
    ["export", "agent:main:main"],
    ["dump"],
    ["stats"],
    ["doctor"],
    ["migrate"],
]


def test_read_commands_never_create_a_store(
    no_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each read command answers as an empty store would, says there is no store
    yet (and where), and leaves no file, folder or table behind."""
    for args in READS:
        code = main(["--db", no_store, *args])
        captured = capsys.readouterr()
        note = f"there is no store at {no_store}"
        last = captured.err.splitlines()[-1]  # dump reports what it wrote first
        assert last.startswith("aisopod-session: "), captured.err
        assert last.endswith((note, f"{note})")), captured.err
        if args[0] in ("show", "state", "history", "context", "export"):
            assert code == 1, args
            assert "no session 'agent:main:main'" in captured.err
        else:
            assert code == 0, captured.err
    assert not store_exists(no_store)
    with pytest.raises(StoreNotFound):
        open_store(no_store, create=False)
    assert not store_exists(no_store)


CHANGES = [
    ["delete", "agent:main:main", "--yes"],
    ["title", "agent:main:main", "a title"],
    ["compact", "agent:main:main"],
    ["rewind", "agent:main:main", "1"],
    ["fork", "agent:main:main"],
    ["maintain"],
    ["migrate", "--apply"],
]


def test_commands_that_change_sessions_never_create_a_store(
    no_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that changes what is there fails on a store that is not, in one line
    saying so; the commands that add sessions of their own (import, restore, copy's
    target) refuse a missing input before they open anything. Nothing is left behind."""
    missing = str(tmp_path / "nothing-here.jsonl")
    target = tmp_path / "copy" / "target.db"
    for args in [*CHANGES, ["copy", "--to", f"sqlite://{target}"]]:
        assert main(["--db", no_store, *args]) == 1, args
        err = capsys.readouterr().err
        assert err == f"aisopod-session: error: no sessions yet: there is no store at {no_store}\n"
    for command, name in (("import", "PATH"), ("restore", "FILE")):
        assert main(["--db", no_store, command, missing]) == 1
        err = capsys.readouterr().err
        assert err == f"aisopod-session: error: {name}: {missing} does not exist\n"
    assert not store_exists(no_store)
    assert not target.parent.exists()


def test_the_command_itself_changes_and_imports_nothing_that_is_not_there(
    no_store: str, tmp_path: Path
) -> None:
    """The same rule through the installed command, a process of its own: a change
    on a missing store, and an import of a missing path, are one-line errors that
    make no store."""
    compact = one_line_error(cli("--db", no_store, "compact", "agent:main:main"))
    assert compact == f"aisopod-session: error: no sessions yet: there is no store at {no_store}"
    missing = tmp_path / "nothing-here"
    imported = one_line_error(cli("--db", no_store, "import", str(missing)))
    assert imported == f"aisopod-session: error: PATH: {missing} does not exist"
    assert not store_exists(no_store)


def test_a_read_of_no_store_gives_empty_json_and_a_note(
    no_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = cli("--db", no_store, "list", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sessions": [], "cursor": None, "previous": None}
    assert done.stderr == f"aisopod-session: no sessions yet: there is no store at {no_store}\n"
    assert main(["--db", no_store, "doctor", "--json"]) == 0
    doctor = json.loads(capsys.readouterr().out)
    assert doctor == {"url": no_store, "exists": False, "problems": []}
    assert not store_exists(no_store)


def test_a_malformed_url_is_an_error_saying_what_is_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never a folder named `sqlite:`: the URL is refused, with the forms it may take."""
    message = one_line_error(
        cli("--db", "sqlite:/abs/path.db", "import", str(EXAMPLE), cwd=tmp_path)
    )
    assert message.startswith("aisopod-session: error: --db: 'sqlite:/abs/path.db' is not")
    assert "sqlite:///absolute/path.db" in message
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:relative.db", "postgresql:db", "mysql://host/db", "sqlite://host/x.db"):
        assert main(["--db", url, "import", str(EXAMPLE)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("aisopod-session: error: --db: "), err
        assert err.count("\n") == 1
        with pytest.raises(InvalidInput):
            open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_bad_url_options_say_which_and_why(
    tmp_path: Path, postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = f"sqlite:///{tmp_path / 's.db'}"
    separator = "&" if "?" in postgres_dsn else "?"
    cases = {
        f"{postgres_dsn}{separator}pool_max=abc": "pool_max",
        f"{postgres_dsn}{separator}pool_timeout=soon": "pool_timeout",
        f"{sqlite}?busy_timeout=abc": "busy_timeout",
        f"{sqlite}?synchronous=fast": "synchronous",
        f"{sqlite}?max_pages=many": "max_pages",
        f"{sqlite}?colour=blue": "colour",
    }
    for url, option in cases.items():
        assert main(["--db", url, "stats"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert option in err
        assert "invalid literal" not in err
        assert "could not convert" not in err
    assert list(tmp_path.iterdir()) == []
    message = one_line_error(cli("--db", f"{postgres_dsn}{separator}pool_max=abc", "list"))
    assert "pool_max" in message
    assert "invalid literal" not in message


def test_a_wrong_postgres_user_or_database_is_the_servers_reason_once(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = urlsplit(postgres_dsn)
    wrong_user = parts._replace(netloc=f"nobody_here@{parts.hostname}:{parts.port}")
    wrong_db = parts._replace(path="/no_such_database")
    for url, reason in (
        (wrong_user, 'role "nobody_here" does not exist'),
        (wrong_db, 'database "no_such_database" does not exist'),
    ):
        assert main(["--db", urlunsplit(url), "import", str(EXAMPLE)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.count(reason) == 1, err


def test_invalid_json_in_a_config_file_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "session.json"
    config.write_text('{"maintenance": {\n  "mode": enforce}}\n')
    db = f"sqlite:///{tmp_path / 's.db'}"
    open_store(db).close()
    assert main(["--db", db, "maintain", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"aisopod-session: error: --config: {config}: not JSON")
    assert "line 2, column 11" in err
    assert err.count("\n") == 1


@pytest.fixture(name="db", params=BACKENDS)
def db_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store holding the example agent's sessions."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
        assert main(["--db", url, "import", str(EXAMPLE), "--json"]) == 0
        yield url
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        assert main(["--db", url, "import", str(EXAMPLE), "--json"]) == 0
        yield url


def test_messages_name_the_commands_own_arguments(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rewind` says SEQ, not the API's `to_seq`; options are named as typed."""
    capsys.readouterr()
    cases = {
        ("rewind", "agent:main:main", "999"): "SEQ: ",
        ("rewind", "agent:main:main", "-3"): "SEQ: ",
        ("fork", "agent:main:main", "--at", "99"): "--at: ",
        ("compact", "agent:main:main", "--keep-turns", "-1"): "--keep-turns: ",
        ("history", "agent:main:main", "--last", "0"): "--last: ",
        ("list", "--limit", "0"): "--limit: ",
        ("search", "x", "--limit", "-1"): "--limit: ",
        ("context", "agent:main:main", "--max-tokens", "-5"): "--max-tokens: ",
        ("list", "--cursor", "zzz"): "--cursor: ",
        # A bad KEY is a usage error, found before the store opens (test_key_rule).
        ("reset", "helo"): "KEY: ",
    }
    before = capsys.readouterr()
    for args, name in cases.items():
        assert main(["--db", db, *args]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith(f"aisopod-session: error: {name}"), (args, err)
        assert err.count("\n") == 1
    del before


def test_usage_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["state", "agent:main:main", "--at", "y"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("aisopod-session state: error: argument --at: ")
    assert "--help" in err


def _has(store: SessionStore, session_id: str) -> bool:
    try:
        store.get(session_id)
    except SessionNotFound:
        return False
    return True


def _interrupt(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()  # no command left running after the test, whatever it did
        process.communicate()
        raise
    return process.returncode, err.decode()


def test_ctrl_c_during_a_read_says_nothing_was_written(tmp_path: Path) -> None:
    """An export blocked on a full pipe, interrupted: exit 130, one line."""
    db = f"sqlite://{tmp_path / 'sessions.db'}"
    with open_store(db) as store:
        session = store.get_or_create("agent:main:big")
        store.append(session.id, [Message.user("x" * 100_000) for _ in range(20)])
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [*COMMAND, "--db", db, "export", "agent:main:big", "-o", str(fifo)],
        env=environment(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        preexec_fn=ctrl_c_reaches_it,
    )
    with fifo.open("rb") as reader:  # opens once the export is writing
        assert reader.read(1000)
        code, err = _interrupt(process)
    assert code == 130
    assert err == "aisopod-session: interrupted; nothing was written\n"


def test_ctrl_c_during_a_restore_says_which_sessions_were_written(db: str, tmp_path: Path) -> None:
    dump = tmp_path / "all.jsonl"
    assert main(["--db", db, "dump", "-o", str(dump)]) == 0
    lines = dump.read_bytes().splitlines(keepends=True)
    kinds = [json.loads(line).get("kind") for line in lines]
    second = kinds.index("session", 2)  # a session line, then its entries
    first_id = json.loads(lines[1])["id"]
    target = f"sqlite:///{tmp_path / 'target.db'}"
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [*COMMAND, "--db", target, "restore", str(fifo)],
        env=environment(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        preexec_fn=ctrl_c_reaches_it,
    )
    with fifo.open("wb") as writer:  # opens once the restore has its store open
        writer.write(b"".join(lines[: second + 1]))
        writer.flush()
        # The first session is written once the line after its entries is read.
        with open_store(target) as store:
            while not _has(store, first_id):
                time.sleep(0.01)
        code, err = _interrupt(process)
    assert code == 130
    assert err.startswith("aisopod-session: interrupted; 1 sessions were written whole")
    assert first_id in err
    assert err.count("\n") == 1
