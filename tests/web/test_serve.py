"""`aisopod-session serve`: the address it prints, the token off loopback, and
its errors in one line."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aisopod_session import open_store
from aisopod_session.cli import main
from tests.web.serve_process import serving


def test_off_loopback_it_makes_up_a_token_and_asks_for_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'sessions.db'}"
    with open_store(db) as store:
        store.get_or_create("agent:ops:main", title="ops only")
    options = ("--host", "0.0.0.0", "--port", "0", "--agent", "Ops")
    with serving(db, *options) as line:
        assert "(read-only, agent ops only)" in line  # the id as the store spells it
        address = line.rsplit(" at ", 1)[1].strip()
        base, _, token = address.partition("?token=")
        assert len(token) >= 40
        local = base.replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{local}api/sessions")
        assert refused.value.code == 401
        refused.value.close()
        asked = urllib.request.Request(
            f"{local}api/sessions", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(asked) as answer:
            assert b"ops only" in answer.read()


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'sessions.db'}"
    assert main(["--db", db, "serve", "--port", "70000"]) == 1
    assert capsys.readouterr().err.startswith(
        "aisopod-session: error: --port: must be a port number, 0 to 65535 (0: any free port)"
        " (no sessions yet: there is no store at sqlite:"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--db", db, "--port", str(port)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"aisopod-session: error: --port: cannot listen on 127.0.0.1:{port}")
    assert error.count("\n") == 1
