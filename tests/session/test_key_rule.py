"""One rule for the keys people give, at every entry point: surrounding whitespace
(newlines too) is trimmed; an empty part or a control character inside is refused,
and nothing is made. (A framework adapter takes a plain id as an opaque name, kept
as it is; an `agent:` key it takes by the same rule.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from aisopod_session import InvalidSessionKey, SessionStore, open_store
from aisopod_session.adapters.langchain import AisopodChatMessageHistory
from aisopod_session.cli import main
from aisopod_session.transfer import import_transcript

REFUSED = [
    "agent:main:",
    "agent:main:telegram:direct:",
    "agent:main::x",
    ":agent:main:x",
    "telegram:direct:",
    "a::b",
    "agent:main:a\nb",
    "chat\t42",
]
TRIMMED = {
    " agent:main:x ": "agent:main:x",
    "agent:main:x\n": "agent:main:x",
    "\tchat-1\r\n": "agent:main:chat-1",
}


def entry_points(store: SessionStore, transcript: Path) -> dict[str, Callable[[str], Any]]:
    """Every way a key comes in, each giving back the stored key."""
    return {
        "get_or_create": lambda key: store.get_or_create(key).key,
        "reset": lambda key: store.reset(key).key,
        "list": lambda key: store.list(key=key) and store.get_or_create(key).key,
        "import": lambda key: (
            import_transcript(store, transcript, key=key, existing="replace").session.key
        ),
    }


def adapter(store: SessionStore) -> Callable[[str], Any]:
    return lambda key: AisopodChatMessageHistory(key, store=store).key


@pytest.fixture(name="setup")
def setup_fixture(tmp_path: Path) -> Any:
    store = open_store(tmp_path / "sessions.db")
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(orjson.dumps({"type": "session", "version": 3, "id": "t-1"}) + b"\n")
    yield store, transcript
    store.close()


def test_every_entry_point_refuses_and_trims_alike(setup: Any) -> None:
    store, transcript = setup
    for name, take in entry_points(store, transcript).items():
        for key in REFUSED:
            with pytest.raises(InvalidSessionKey):
                take(key)
        for key, stored in TRIMMED.items():
            assert take(key) == stored, name
    for key in REFUSED:
        if key.startswith("agent:"):
            with pytest.raises(InvalidSessionKey):
                adapter(store)(key)
    assert adapter(store)(" agent:main:x\n") == "agent:main:x"
    assert {s.key for s in store.list()} == set(TRIMMED.values())


def test_the_command_refuses_a_bad_key_before_it_opens_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite://{tmp_path / 's.db'}"
    for args in (
        ["reset", "agent:main:telegram:direct:"],
        ["fork", "agent:main:main", "--key", "agent:main::x"],
        ["import", str(tmp_path), "--key", "chat\t1"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(["--db", db, *args])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "argument KEY: invalid session key" in err or "argument --key" in err
    assert not (tmp_path / "s.db").exists()
