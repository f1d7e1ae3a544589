"""OpenClaw's own folders as they are found on disk: a whole state folder, an agent's
`sessions/` folder alone, and the archives OpenClaw keeps of reset and cold sessions
(`<id>.jsonl.reset.<time>`, `*.jsonl.zst`), read as they are decompressed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import zstandard

from aisopod_session import TranscriptError
from aisopod_session.cli import main
from aisopod_session.transfer import import_openclaw_agent, import_openclaw_folder
from tests.session.snapshot import snapshot
from tests.session.test_transcripts import (
    DIRECT,
    EXAMPLES,
    SESSIONS,
    export_text,
    header,
    make_agent_folder,
    small_transcript,
    user,
)
from tests.session.transcript_helpers import write_jsonl


def compress(path: Path, *, frames: int = 1, keep: bool = False) -> Path:
    """`path` as `<path>.zst`, in `frames` zstd frames (OpenClaw's writers may append
    frames); the plain file goes unless `keep`."""
    data = path.read_bytes()
    step = -(-len(data) // frames)
    compressor = zstandard.ZstdCompressor()
    target = path.with_name(path.name + ".zst")
    target.write_bytes(
        b"".join(compressor.compress(data[i : i + step]) for i in range(0, len(data), step))
    )
    if not keep:
        path.unlink()
    return target


def test_a_compressed_transcript_imports_as_the_plain_one(store: Any, tmp_path: Path) -> None:
    """Three frames, read as one stream: the same session, entry for entry."""
    plain = Path(shutil.copy(SESSIONS / f"{DIRECT}.jsonl", tmp_path / f"{DIRECT}.jsonl"))
    expected = plain.read_text(encoding="utf-8")
    archive = compress(plain, frames=3)
    (result,) = import_openclaw_agent(store, _folder_with(tmp_path, archive))
    assert (result.session.id, result.entries, result.version) == (DIRECT, 16, 3)
    exported = export_text(store, DIRECT).splitlines()
    assert [json.loads(x)["id"] for x in exported] == [
        json.loads(x)["id"] for x in expected.splitlines()
    ]


def _folder_with(root: Path, *files: Path) -> Path:
    """An agent folder `ops` whose `sessions/` holds `files` (no `sessions.json`)."""
    sessions = root / "ops" / "sessions"
    sessions.mkdir(parents=True)
    for file in files:
        shutil.move(file, sessions / file.name)
    return sessions


def test_an_archive_cut_short_is_refused_and_nothing_is_written(store: Any, tmp_path: Path) -> None:
    folder = make_agent_folder(tmp_path, "ops", {})
    small_transcript(folder, "s-whole")
    archive = compress(small_transcript(folder, "s-cut"))
    archive.write_bytes(archive.read_bytes()[:-6])
    with pytest.raises(TranscriptError, match="cut short") as caught:
        import_openclaw_agent(store, folder)
    assert caught.value.path == str(archive)
    assert snapshot(store) == []


def test_reset_and_cold_archives_come_in_archived_and_deleted_ones_stay_out(
    store: Any, tmp_path: Path
) -> None:
    folder = make_agent_folder(
        tmp_path, "ops", {"agent:ops:main": {"sessionId": "s-now", "updatedAt": 1_700_000_900_000}}
    )
    sessions = folder / "sessions"
    small_transcript(folder, "s-now")
    # The session the key had before its reset, plain and compressed.
    small_transcript(folder, "s-before", "s-before.jsonl.reset.2026-05-05T10-00-00.000Z")
    compress(small_transcript(folder, "s-older", "s-older.jsonl.reset.2026-04-01T09-00-00.000Z"))
    # A cold session, compressed; and an older copy of the live one OpenClaw kept.
    compress(small_transcript(folder, "s-cold"))
    write_jsonl(
        sessions / "s-now.jsonl.reset.2026-01-01T00-00-00.000Z",
        [header("s-now"), user("a", None, "x")],
    )
    small_transcript(folder, "s-gone", "s-gone.jsonl.deleted.2026-05-01T00-00-00.000Z")
    results = {r.session.id: r for r in import_openclaw_agent(store, folder)}
    assert set(results) == {"s-now", "s-before", "s-older", "s-cold"}
    assert store.current("agent:ops:main").id == "s-now"
    assert results["s-now"].entries == 1
    for archived in ("s-before", "s-older", "s-cold"):
        session = results[archived].session
        assert (session.key, session.status, session.entry_count) == (None, "archived", 1)


def test_a_key_whose_transcript_is_only_compressed_finds_it(store: Any, tmp_path: Path) -> None:
    folder = make_agent_folder(
        tmp_path, "ops", {"agent:ops:main": {"sessionId": "s-1", "updatedAt": 1_700_000_000_000}}
    )
    compress(small_transcript(folder, "s-1"))
    (result,) = import_openclaw_agent(store, folder)
    assert (result.missing, result.entries, result.session.key) == (False, 1, "agent:ops:main")


def test_a_state_folder_imports_every_agent_checked_first(store: Any, tmp_path: Path) -> None:
    """`~/.openclaw` and `~/.openclaw/agents` alike; a bad file in one agent writes nothing."""
    state = tmp_path / ".openclaw"
    shutil.copytree(EXAMPLES, state / "agents" / "main")
    ops = make_agent_folder(
        state / "agents", "ops", {"main": {"sessionId": "s-ops", "updatedAt": 1_700_000_000_000}}
    )
    small_transcript(ops, "s-ops")
    (state / "agents" / "not-an-agent").mkdir()
    bad = write_jsonl(ops / "sessions" / "s-bad.jsonl", [header("s-bad"), "{not json"])

    with pytest.raises(TranscriptError, match="not JSON"):
        import_openclaw_folder(store, state)
    assert snapshot(store) == []

    bad.unlink()
    results = import_openclaw_folder(store, state / "agents")
    assert len(results) == 6
    assert store.current("agent:ops:main").id == "s-ops"
    assert store.current("agent:main:main").id == DIRECT
    again = import_openclaw_folder(store, state, existing="skip")
    assert all(r.existed for r in again)


def test_a_folder_with_no_agents_is_refused(store: Any, tmp_path: Path) -> None:
    (tmp_path / "agents" / "empty").mkdir(parents=True)
    with pytest.raises(TranscriptError, match="not an OpenClaw folder"):
        import_openclaw_folder(store, tmp_path)


def test_the_command_imports_a_state_folder_and_a_compressed_transcript(
    shared_database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / ".openclaw"
    shutil.copytree(EXAMPLES, state / "agents" / "main")
    ops = make_agent_folder(state / "agents", "ops", {})
    compress(small_transcript(ops, "s-ops", "s-ops.jsonl.reset.2026-05-05T10-00-00.000Z"))
    db = shared_database_url
    assert main(["--db", db, "import", str(state), "--agent", "ops", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["s-ops"]
    assert main(["--db", db, "import", str(state), "--agent", "nobody"]) == 1
    assert "holds no folder of agent 'nobody'" in capsys.readouterr().err
    assert main(["--db", db, "import", str(state), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6

    lone = compress(small_transcript(make_agent_folder(tmp_path, "x", {}), "s-lone"))
    assert main(["--db", db, "import", str(lone), "--key", "agent:main:lone", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["s-lone"]
    assert main(["--db", db, "show", "agent:main:lone", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 1

    broken = tmp_path / "broken.jsonl.zst"
    broken.write_bytes(lone.read_bytes()[:-5])
    assert main(["--db", db, "import", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{broken}: a zstd archive cut short" in err


def test_a_compressed_dump_restores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = f"sqlite://{tmp_path / 'a.db'}", f"sqlite://{tmp_path / 'b.db'}"
    assert main(["--db", source, "import", str(EXAMPLES), "--json"]) == 0
    dump = tmp_path / "all.jsonl"
    assert main(["--db", source, "dump", "-o", str(dump)]) == 0
    archive = compress(dump)
    assert main(["--db", target, "import", str(archive), "--json"]) == 0
    capsys.readouterr()
    assert main(["--db", target, "restore", str(archive), "--skip-existing"]) == 0
    assert "5 sessions of the dump were already in the store" in capsys.readouterr().err
    assert main(["--db", target, "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sessions"]) == 5
