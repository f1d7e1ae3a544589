"""OpenClaw / pi transcripts: import of versions 1-3, export of version 3, agent folders."""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import (
    InvalidInput,
    NewEntry,
    SessionExists,
    SessionNotFound,
    TranscriptError,
)
from aisopod_session._entries import iso_timestamp
from aisopod_session.transfer import (
    HEADER_METADATA_KEY,
    OPENCLAW_METADATA_KEY,
    SkippedLine,
    export_transcript,
    import_openclaw_agent,
    import_transcript,
)
from aisopod_session.transfer import _transcript_import as transcripts_module
from aisopod_session.transfer._images import PAGE
from aisopod_shared import Message
from tests.session.snapshot import all_entries, snapshot
from tests.session.transcript_helpers import (
    JsonLine,
    assert_same_json,
    expected_export,
    read_jsonl,
    transcripts,
    write_jsonl,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "openclaw" / "main"
SESSIONS = EXAMPLES / "sessions"
DIRECT = "3f9c2a7e-5b1d-4c8e-9a06-2d7f41e8b5c3"
GROUP = "8d41b6f0-2c9e-4a73-b1d5-6e0f93a2c718"
THREAD = "c05e7a19-94d2-4f6b-8e3a-71b2d0f4e9a6"
CRON_V2 = "5a7d2e91-0b3c-4f18-9c64-e8f1a2b3c4d5"
ORPHAN_V1 = "e1b0c9d8-7a6f-4e5d-8c4b-3a2f1e0d9c8b"

T0 = "2026-02-01T10:00:00.000Z"


def header(session_id: str = "s-1", version: int | None = 3, **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "session"}
    if version is not None:
        line["version"] = version
    return {**line, "id": session_id, "timestamp": T0, "cwd": "/work", **fields}


def user(entry_id: str | None, parent: str | None, text: str, **fields: Any) -> dict[str, Any]:
    """A user message entry (version 1 when `entry_id` is None: no id, no parent)."""
    line: dict[str, Any] = {"type": "message"}
    if entry_id is not None:
        line.update(id=entry_id, parentId=parent)
    message = {"role": "user", "content": text, "timestamp": 1_769_940_000_000}
    return {**line, "timestamp": T0, "message": message, **fields}


def assistant(entry_id: str, parent: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "ok"}],
        "api": "anthropic-messages",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": usage,
        "stopReason": "stop",
        "timestamp": 1_769_940_001_000,
    }
    return {
        "type": "message",
        "id": entry_id,
        "parentId": parent,
        "timestamp": T0,
        "message": message,
    }


def export_text(store: Any, session_id: str) -> str:
    out = io.StringIO()
    export_transcript(store, session_id, out)
    return out.getvalue()


def round_trip(store: Any, path: Path, **options: Any) -> tuple[list[Any], list[Any]]:
    """(the file's lines, the lines of export(import(file)))."""
    result = import_transcript(store, path, **options)
    original = read_jsonl(path.read_text(encoding="utf-8"))
    return original, read_jsonl(export_text(store, result.session.id))


# --- reading each version --------------------------------------------------------------


def test_a_version_3_file_keeps_its_ids_tree_and_leaf(store: Any, tmp_path: Path) -> None:
    lines = [header(), user("a1", None, "one"), user("b2", "a1", "two"), user("c3", "a1", "three")]
    result = import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines))
    entries = all_entries(store, "s-1")
    assert [(e.id, e.parent_seq) for e in entries] == [("a1", None), ("b2", 1), ("c3", 1)]
    assert result.session.leaf_seq == 3
    assert result.session.id == "s-1"
    assert (result.version, result.entries, result.lines) == (3, 3, 4)


def test_version_1_entries_get_short_stable_ids_and_chained_parents(
    store: Any, tmp_path: Path
) -> None:
    lines = [header(version=None), user(None, None, "one"), user(None, None, "two")]
    path = write_jsonl(tmp_path / "v1.jsonl", [*lines, user(None, None, "three")])
    import_transcript(store, path)
    first = all_entries(store, "s-1")
    assert [e.parent_seq for e in first] == [None, 1, 2]
    ids = [e.id for e in first]
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 3
    store.delete("s-1")
    import_transcript(store, path)
    assert [e.id for e in all_entries(store, "s-1")] == ids


def test_a_version_1_compaction_index_becomes_the_kept_entrys_id(store: Any) -> None:
    import_transcript(store, SESSIONS / f"{ORPHAN_V1}.jsonl")
    entries = all_entries(store, ORPHAN_V1)
    compaction = next(e for e in entries if e.type == "compaction")
    # Index 3 counts the header as 0: the third entry ("nice. shorter?").
    assert compaction.payload["firstKeptEntryId"] == entries[2].id
    assert "firstKeptEntryIndex" not in compaction.payload
    assert entries[2].payload["message"]["content"][0]["text"] == "nice. shorter?"


@pytest.mark.parametrize("index", [0, 9, -1])
def test_a_version_1_compaction_index_naming_no_earlier_entry_is_dropped(
    store: Any, tmp_path: Path, index: int
) -> None:
    compaction = {"type": "compaction", "timestamp": T0, "summary": "s", "tokensBefore": 5}
    lines = [
        header(version=None),
        user(None, None, "one"),
        {**compaction, "firstKeptEntryIndex": index},
    ]
    import_transcript(store, write_jsonl(tmp_path / "v1.jsonl", lines))
    payload = all_entries(store, "s-1")[1].payload
    assert "firstKeptEntryIndex" not in payload
    assert "firstKeptEntryId" not in payload


def hook_message(entry_id: str | None, parent: str | None) -> dict[str, Any]:
    line = user(entry_id, parent, "")
    line["message"] = {
        "role": "hookMessage",
        "customType": "cron",
        "content": "run",
        "display": False,
    }
    return line


@pytest.mark.parametrize(("version", "role"), [(None, "custom"), (2, "custom"), (3, "hookMessage")])
def test_the_hook_message_role_is_renamed_custom_below_version_3(
    store: Any, tmp_path: Path, version: int | None, role: str
) -> None:
    entry_id = None if version is None else "a1"
    lines = [header(version=version), hook_message(entry_id, None)]
    import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines))
    message = all_entries(store, "s-1")[0].payload["message"]
    assert message == {"role": role, "customType": "cron", "content": "run", "display": False}


def test_unknown_entry_types_and_fields_are_kept_verbatim(store: Any, tmp_path: Path) -> None:
    odd = {"type": "x_plugin_state", "id": "b2", "parentId": "a1", "timestamp": T0, "x": [1, 2.5]}
    first = user("a1", None, "hi", xNote={"deep": [None, True]})
    first["message"]["xFlag"] = "kept"
    import_transcript(store, write_jsonl(tmp_path / "t.jsonl", [header(), first, odd]))
    one, two = all_entries(store, "s-1")
    assert one.payload["xNote"] == {"deep": [None, True]}
    assert one.payload["message"]["xFlag"] == "kept"
    assert (two.type, dict(two.payload)) == ("x_plugin_state", {"timestamp": T0, "x": [1, 2.5]})


def test_header_fields_are_kept_in_metadata_and_written_back(store: Any, tmp_path: Path) -> None:
    old = header(
        version=None,
        provider="anthropic",
        modelId="m",
        thinkingLevel="low",
        branchedFrom="/a.jsonl",
        xOwn={"k": 1},
    )
    path = write_jsonl(tmp_path / "t.jsonl", [old, user(None, None, "hi")])
    session = import_transcript(store, path).session
    kept = {k: v for k, v in old.items() if k not in ("type", "id")}
    assert session.metadata[HEADER_METADATA_KEY] == kept
    written = read_jsonl(export_text(store, "s-1"))[0]
    assert written == {
        "type": "session",
        "version": 3,
        "id": "s-1",
        "timestamp": T0,
        "cwd": "/work",
        "provider": "anthropic",
        "modelId": "m",
        "thinkingLevel": "low",
        "parentSession": "/a.jsonl",
        "xOwn": {"k": 1},
    }


def test_an_entry_timestamp_is_its_time_and_stays_in_its_payload(
    store: Any, tmp_path: Path
) -> None:
    stamped = user("a1", None, "one", timestamp="2026-02-03T04:05:06.789+01:00")
    unstamped = user("b2", "a1", "two")
    del unstamped["timestamp"]
    path = write_jsonl(tmp_path / "t.jsonl", [header(), stamped, unstamped])
    import_transcript(store, path)
    one, two = all_entries(store, "s-1")
    assert one.created_at == datetime(2026, 2, 3, 3, 5, 6, 789000, tzinfo=UTC)
    assert one.payload["timestamp"] == "2026-02-03T04:05:06.789+01:00"
    # No time of its own: the one before it, written out on export.
    assert two.created_at == one.created_at
    assert "timestamp" not in two.payload
    exported = read_jsonl(export_text(store, "s-1"))
    assert [line["timestamp"] for line in exported[1:]] == [
        "2026-02-03T04:05:06.789+01:00",
        "2026-02-03T03:05:06.789Z",
    ]


def test_usage_of_assistant_messages_adds_up_to_the_session_totals(store: Any) -> None:
    session = import_transcript(store, SESSIONS / f"{DIRECT}.jsonl").session
    usages = [
        line["message"]["usage"]
        for line in read_jsonl((SESSIONS / f"{DIRECT}.jsonl").read_text(encoding="utf-8"))
        if line["type"] == "message" and "usage" in line["message"]
    ]
    assert session.usage.input == sum(u["input"] for u in usages)
    assert session.usage.output == sum(u["output"] for u in usages)
    assert session.usage.cache_read == sum(u["cacheRead"] for u in usages)
    assert session.usage.cache_write == sum(u["cacheWrite"] for u in usages)
    assert session.usage.total == sum(u["totalTokens"] for u in usages)
    assert session.usage.cost == pytest.approx(sum(u["cost"]["total"] for u in usages))


def test_usage_without_total_tokens_counts_the_four_kinds(store: Any) -> None:
    session = import_transcript(store, SESSIONS / f"{CRON_V2}.jsonl").session
    usage = session.usage
    assert usage.total == usage.input + usage.output + usage.cache_read + usage.cache_write > 0


def test_branches_survive_and_the_leaf_is_the_files_last_entry(store: Any, tmp_path: Path) -> None:
    lines = [
        header(),
        user("a1", None, "one"),
        user("b2", "a1", "two"),
        user("c3", "a1", "two, again"),
        user("d4", "b2", "back on the first branch"),
    ]
    session = import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines)).session
    assert session.leaf_seq == 4
    branches = store.branches("s-1")
    assert [(b.leaf_seq, b.active) for b in branches] == [(3, False), (4, True)]
    assert [e.id for e in store.path("s-1").entries] == ["a1", "b2", "d4"]


def test_an_imported_compaction_shapes_the_context_as_pi_does(store: Any) -> None:
    import_transcript(store, SESSIONS / f"{GROUP}.jsonl")
    context = store.context(GROUP)
    assert context.compaction is not None
    assert context.messages[0].role == "compactionSummary"
    kept = context.entries[1].payload["message"]["content"][0]["text"]
    assert kept == "Inês: put me down for the wine. red, 3 bottles"


# --- where the session goes ------------------------------------------------------------


def test_a_key_binds_the_session_as_the_keys_current_one(store: Any, tmp_path: Path) -> None:
    old = store.get_or_create("agent:main:telegram:direct:7")
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    session = import_transcript(store, path, key="telegram:direct:7").session
    assert (session.key, session.status) == ("agent:main:telegram:direct:7", "active")
    assert store.current("agent:main:telegram:direct:7").id == "s-1"
    assert store.get(old.id).status == "archived"


def test_a_key_with_current_false_keeps_the_session_archived_and_unbound(
    store: Any, tmp_path: Path
) -> None:
    bound = store.get_or_create("agent:main:main")
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    session = import_transcript(store, path, key="main", current=False).session
    assert (session.key, session.status) == ("agent:main:main", "archived")
    assert store.current("agent:main:main").id == bound.id


def test_without_a_key_the_session_is_active_and_unbound(store: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    session = import_transcript(store, path, agent_id="Ops Team").session
    assert (session.key, session.status, session.agent_id) == (None, "active", "ops-team")


def test_a_scoped_store_imports_for_its_agent(store: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    session = import_transcript(store.for_agent("ops"), path, key="main").session
    assert (session.agent_id, session.key) == ("ops", "agent:ops:main")


def test_a_key_of_another_agent_than_agent_id_is_refused(store: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    with pytest.raises(InvalidInput, match="belongs to agent"):
        import_transcript(store, path, agent_id="ops", key="agent:main:main")


def test_importing_a_session_the_store_holds_changes_nothing(store: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [header(), user("a1", None, "hi")])
    import_transcript(store, path)
    before = snapshot(store)
    with pytest.raises(SessionExists):
        import_transcript(store, path, key="main")
    assert snapshot(store) == before


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SESSIONS.glob("*.jsonl")), ids=lambda n: n[:8]
)
def test_every_example_survives_export_of_its_import(store: Any, name: str) -> None:
    original, exported = round_trip(store, SESSIONS / name)
    assert_same_json(exported, expected_export(original, exported))


@pytest.mark.parametrize("version", [1, 2, 3])
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_transcript_survives_export_of_its_import(
    store: Any, tmp_path: Path, version: int, data: st.DataObject
) -> None:
    lines = data.draw(transcripts(version))
    session_id = str(uuid.uuid4())
    lines[0]["id"] = session_id
    original, exported = round_trip(store, write_jsonl(tmp_path / f"{session_id}.jsonl", lines))
    assert_same_json(original, lines)
    assert_same_json(exported, expected_export(original, exported))


NUMBERS = [
    *(0, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1),
    *(0.1, 0.30000000000000004, 123.456, 5e-324, 1e-7, 1.7976931348623157e308, 1e21),
]
NON_JS_NUMBERS = [-0.0, 1.0, 1e16, -3e18]
"""Floats JavaScript never writes (it writes these whole values as integers)."""


def numbers_file(tmp_path: Path, values: list[Any]) -> Path:
    usage = {"input": 1, "output": 2, "cacheRead": 0, "cacheWrite": 0, "cost": {"total": 0.1}}
    reply = assistant("b2", "a1", usage)
    reply["message"]["usage"]["cost"]["input"] = values[0]
    lines = [
        header(),
        user("a1", None, "n"),
        reply,
        {
            "type": "custom",
            "id": "c3",
            "parentId": "b2",
            "timestamp": T0,
            "customType": "n",
            "data": values,
        },
    ]
    return write_jsonl(tmp_path / "numbers.jsonl", lines)


def test_numbers_keep_their_type_and_value(store: Any, tmp_path: Path) -> None:
    original, exported = round_trip(store, numbers_file(tmp_path, NUMBERS))
    assert_same_json(exported, original)


def test_floats_javascript_would_not_write_keep_their_type_and_value(
    store: Any, tmp_path: Path
) -> None:
    original, exported = round_trip(store, numbers_file(tmp_path, NON_JS_NUMBERS))
    assert_same_json(exported, original)


def test_a_native_session_exports_as_a_transcript_that_imports_back(
    store: Any, tmp_path: Path
) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [NewEntry.model_change("anthropic", "m"), Message.user("hello")])
    store.append(session.id, Message.assistant("hi there"))
    store.rewind(session.id, 2)
    store.append(session.id, Message.user("hello again"))
    path = tmp_path / "native.jsonl"
    assert export_transcript(store, session.id, path) == 4
    lines = read_jsonl(path.read_text(encoding="utf-8"))
    entries = all_entries(store, session.id)
    assert lines[0] == {
        "type": "session",
        "version": 3,
        "id": session.id,
        "timestamp": iso_timestamp(session.created_at),
        "cwd": "",
    }
    assert [(line["id"], line["parentId"]) for line in lines[1:]] == [
        (entries[0].id, None),
        (entries[1].id, entries[0].id),
        (entries[2].id, entries[1].id),
        (entries[3].id, entries[1].id),
    ]
    assert [line["timestamp"] for line in lines[1:]] == [
        iso_timestamp(e.created_at) for e in entries
    ]
    store.delete(session.id)
    import_transcript(store, path)

    def shape(entry: Any) -> tuple[Any, ...]:
        return (entry.id, entry.parent_seq, entry.type, entry.payload.get("message"))

    assert [shape(e) for e in all_entries(store, session.id)] == [shape(e) for e in entries]


def test_export_to_a_path_writes_what_export_to_a_file_writes(store: Any, tmp_path: Path) -> None:
    import_transcript(store, SESSIONS / f"{THREAD}.jsonl")
    path = tmp_path / "out.jsonl"
    count = export_transcript(store, THREAD, str(path))
    assert count == 11
    assert path.read_text(encoding="utf-8") == export_text(store, THREAD)


def test_exporting_an_unknown_session_leaves_no_file(store: Any, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(SessionNotFound):
        export_transcript(store, "nope", folder / "out.jsonl")
    assert list(folder.iterdir()) == []


class CallRecorder:
    """A store that records the calls made to it."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)

        return call


def test_a_large_session_exports_a_page_at_a_time(store: Any, tmp_path: Path) -> None:
    """5,000 entries; every 400th branches back to the first. Export reads pages of
    history and asks the store only for the ids of those far-away parents."""
    lines: list[JsonLine] = [header("big")]
    for n in range(1, 5001):
        parent = None if n == 1 else (f"{1:08x}" if n % 400 == 0 else f"{n - 1:08x}")
        lines.append(user(f"{n:08x}", parent, f"turn {n}"))
    path = write_jsonl(tmp_path / "big.jsonl", lines)
    import_transcript(store, path)
    recorder = CallRecorder(store)
    exported = read_jsonl(export_text(recorder, "big"))
    assert_same_json(exported, read_jsonl(path.read_text(encoding="utf-8")))
    pages = [kwargs for name, _, kwargs in recorder.calls if name == "history"]
    asked = [list(args[1]) for name, args, _ in recorder.calls if name == "entry_ids"]
    assert len(pages) == 5
    assert all(page["limit"] == PAGE for page in pages)
    # Seq 1 is on the first page; after it, each page asks for it once.
    assert asked == [[1]] * 4
    assert {name for name, _, _ in recorder.calls} == {"get", "history", "entry_ids"}


# --- bad files -----------------------------------------------------------------------------

GOOD: list[JsonLine] = [header(), user("a1", None, "one"), user("b2", "a1", "two")]

BAD_FILES: dict[str, tuple[list[JsonLine], int | None, str]] = {
    "truncated last line": (
        [*GOOD, '{"type":"message","id":"c3","parentId":"b2","mess'],
        4,
        "truncated",
    ),
    "a line that is not JSON": ([GOOD[0], GOOD[1], "oops, not json", GOOD[2]], 3, "not JSON"),
    "an unknown parent": ([*GOOD, user("c3", "zz", "three")], 4, "parent 'zz'"),
    "a parent further down": (
        [GOOD[0], user("a1", "b2", "one"), user("b2", None, "two")],
        2,
        "parent",
    ),
    "a duplicate id": ([*GOOD, user("a1", "b2", "three")], 4, "duplicate entry id 'a1'"),
    "another format": ([{"role": "user", "content": "hi"}, GOOD[1]], 1, "not a transcript"),
    "a JSON array": (["[1, 2, 3]"], 1, "not a transcript"),
    "plain text": (["# my notes", "nothing here"], 1, "not a transcript"),
    "a newer version": ([header(version=4), GOOD[1]], 1, "unsupported transcript version 4"),
    "a header without id": ([{"type": "session", "version": 3}], 1, "no valid `id`"),
    "a second header": ([*GOOD, header("s-2")], 4, "second `session` header"),
    "an entry without type": ([*GOOD, {"id": "c3", "parentId": "b2"}], 4, "no `type`"),
    "an entry without id": ([*GOOD, {"type": "label", "parentId": "b2"}], 4, "valid `id`"),
    "a message without message": ([*GOOD, {"type": "message", "id": "c3"}], 4, "`message` object"),
    "an integer beyond 64 bits": (
        [GOOD[0], '{"type":"x","id":"a1","n":18446744073709551616}'],
        2,
        "64 bits",
    ),
    "a NUL character": ([*GOOD, user("c3", "b2", "nul \x00 here")], 4, "NUL"),
    "blank lines, then no header": (["", "  ", "{}"], 3, "not a transcript"),
    "an empty file": ([], None, "empty"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_at_its_line_and_nothing_is_written(
    store: Any, tmp_path: Path, case: str
) -> None:
    lines, line, reason = BAD_FILES[case]
    path = write_jsonl(tmp_path / "bad.jsonl", lines, final_newline=case != "truncated last line")
    if not lines:
        path.write_bytes(b"")
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("already here"))
    before = snapshot(store)
    with pytest.raises(TranscriptError, match=reason) as caught:
        import_transcript(store, path, key="main")
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert snapshot(store) == before


def test_an_entry_the_store_refuses_mid_write_names_its_line(
    open_test_store: Callable[..., Any], tmp_path: Path
) -> None:
    store = open_test_store(max_payload_bytes=300)
    store.get_or_create("agent:main:main")
    before = snapshot(store)
    lines = [*GOOD, user("c3", "b2", "x" * 400), user("d4", "c3", "four")]
    path = write_jsonl(tmp_path / "big.jsonl", lines)
    with pytest.raises(TranscriptError, match="over the limit") as caught:
        import_transcript(store, path)
    assert caught.value.line == 4
    assert snapshot(store) == before


def test_a_file_that_changes_between_the_two_passes_is_refused(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", GOOD)
    scan = transcripts_module.scan

    def scan_then_append(source: str, *, skip_bad_lines: bool) -> Any:
        summary = scan(source, skip_bad_lines=skip_bad_lines)
        with open(source, "a", encoding="utf-8") as file:
            file.write(orjson.dumps(user("c3", "b2", "late")).decode() + "\n")
        return summary

    monkeypatch.setattr(transcripts_module, "scan", scan_then_append)
    before = snapshot(store)
    with pytest.raises(TranscriptError, match="changed"):
        import_transcript(store, path)
    assert snapshot(store) == before


# --- skipping bad lines ------------------------------------------------------------------


def test_skip_bad_lines_leaves_out_a_truncated_last_line(store: Any, tmp_path: Path) -> None:
    lines: list[JsonLine] = [*GOOD, '{"type":"message","id":"c3","parentId":"b2","mess']
    path = write_jsonl(tmp_path / "t.jsonl", lines, final_newline=False)
    result = import_transcript(store, path, skip_bad_lines=True)
    assert result.skipped == (SkippedLine(4, "truncated last line (no newline, not JSON)"),)
    assert (result.entries, result.session.leaf_seq) == (2, 2)


def test_a_child_of_a_skipped_line_hangs_from_the_entry_before_it(
    store: Any, tmp_path: Path
) -> None:
    lines: list[JsonLine] = [
        *GOOD,
        "{not json: this was c3, a child of b2}",
        user("e5", "a1", "a branch from a1, unaffected"),
        user("d4", "c3", "the child of the lost line"),
        user("f6", "d4", "its child"),
    ]
    result = import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines), skip_bad_lines=True)
    assert [s.line for s in result.skipped] == [4]
    assert result.reparented == (6,)
    parents = {e.id: e.parent_seq for e in all_entries(store, "s-1")}
    assert parents == {"a1": None, "b2": 1, "e5": 1, "d4": 2, "f6": 4}


def test_skip_bad_lines_reports_every_kind_of_unreadable_line(store: Any, tmp_path: Path) -> None:
    lines: list[JsonLine] = [
        GOOD[0],
        "garbage",
        GOOD[1],
        {"id": "x", "parentId": None},
        {"type": "message", "id": "y", "parentId": "a1", "message": "not an object"},
        GOOD[2],
    ]
    result = import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines), skip_bad_lines=True)
    assert [s.line for s in result.skipped] == [2, 4, 5]
    assert [e.id for e in all_entries(store, "s-1")] == ["a1", "b2"]


@pytest.mark.parametrize(
    "lines",
    [
        [*GOOD, user("a1", "b2", "duplicate")],
        [*GOOD, user("c3", "zz", "a parent nowhere, nothing skipped")],
        ["not a header", *GOOD],
    ],
    ids=["duplicate id", "unknown parent", "no header"],
)
def test_skip_bad_lines_still_refuses_a_contradictory_file(
    store: Any, tmp_path: Path, lines: list[JsonLine]
) -> None:
    with pytest.raises(TranscriptError):
        import_transcript(store, write_jsonl(tmp_path / "t.jsonl", lines), skip_bad_lines=True)
    assert snapshot(store) == []


# --- OpenClaw agent folders --------------------------------------------------------------


def test_an_agent_folder_binds_each_key_to_its_session(store: Any) -> None:
    results = import_openclaw_agent(store, EXAMPLES)
    by_id = {r.session.id: r for r in results}
    assert set(by_id) == {DIRECT, GROUP, THREAD, CRON_V2, ORPHAN_V1}
    expected = {
        "agent:main:main": DIRECT,
        "agent:main:telegram:group:-1001234567890": GROUP,
        "agent:main:discord:channel:1122334455667788:thread:1199887766554433": THREAD,
        # A key without the agent prefix, as older OpenClaw wrote them.
        "agent:main:cron:daily-digest": CRON_V2,
    }
    for key, session_id in expected.items():
        assert store.current(key).id == session_id
        assert by_id[session_id].session.status == "active"
    assert {r.session.agent_id for r in results} == {"main"}
    assert by_id[DIRECT].session.entry_count == 16
    assert by_id[CRON_V2].version == 2


def test_an_agent_folder_carries_origins_over(store: Any) -> None:
    sessions = {r.session.id: r.session for r in import_openclaw_agent(store, EXAMPLES)}
    direct, group, thread = sessions[DIRECT].origin, sessions[GROUP].origin, sessions[THREAD].origin
    assert (direct.channel, direct.account, direct.chat_type, direct.peer, direct.label) == (
        "telegram",
        "default",
        "direct",
        "5550123",
        "Mara (@mara_f)",
    )
    assert direct.extra["surface"] == "telegram"
    assert (group.channel, group.chat_type, group.peer) == ("telegram", "group", "-1001234567890")
    assert (thread.channel, thread.peer, thread.thread, thread.label) == (
        "discord",
        "1122334455667788",
        "1199887766554433",
        "shop-api staging deploy",
    )
    assert sessions[THREAD].title == "shop-api staging deploy"
    assert sessions[DIRECT].title == "Lisbon weekend"


def test_an_agent_folder_keeps_the_rest_of_each_map_entry(store: Any) -> None:
    sessions = {r.session.id: r.session for r in import_openclaw_agent(store, EXAMPLES)}
    kept = sessions[CRON_V2].metadata[OPENCLAW_METADATA_KEY]
    assert kept["key"] == "cron:daily-digest"
    assert kept["entry"]["model"] == "gpt-5-mini"
    assert "sessionId" not in kept["entry"]
    assert "sessionFile" not in sessions[DIRECT].metadata[OPENCLAW_METADATA_KEY]["entry"]
    assert sessions[DIRECT].metadata[HEADER_METADATA_KEY]["cwd"] == "/home/mara/.openclaw/workspace"


def test_transcripts_the_map_does_not_name_are_archived_without_a_key(store: Any) -> None:
    results = {r.session.id: r for r in import_openclaw_agent(store, EXAMPLES)}
    orphan = results[ORPHAN_V1]
    assert (orphan.session.key, orphan.session.status, orphan.version) == (None, "archived", 1)
    assert OPENCLAW_METADATA_KEY not in orphan.session.metadata


def make_agent_folder(root: Path, name: str, session_map: dict[str, Any]) -> Path:
    folder = root / name
    (folder / "sessions").mkdir(parents=True)
    (folder / "sessions" / "sessions.json").write_bytes(orjson.dumps(session_map))
    return folder


def small_transcript(folder: Path, session_id: str, file_name: str | None = None) -> Path:
    path = folder / "sessions" / (file_name or f"{session_id}.jsonl")
    return write_jsonl(path, [header(session_id), user("a1", None, f"hello from {session_id}")])


def test_the_agent_is_the_folders_name_and_legacy_keys_become_its_keys(
    store: Any, tmp_path: Path
) -> None:
    folder = make_agent_folder(
        tmp_path, "Ops Team", {"main": {"sessionId": "s-main", "updatedAt": 1_700_000_000_000}}
    )
    small_transcript(folder, "s-main")
    (result,) = import_openclaw_agent(store, folder / "sessions")
    assert (result.session.agent_id, result.session.key) == ("ops-team", "agent:ops-team:main")


def test_two_keys_that_normalise_alike_leave_the_latest_current(store: Any, tmp_path: Path) -> None:
    folder = make_agent_folder(
        tmp_path,
        "ops",
        {
            "Telegram:Direct:7": {"sessionId": "s-old", "updatedAt": 1_700_000_000_000},
            "agent:ops:telegram:direct:7": {"sessionId": "s-new", "updatedAt": 1_700_000_900_000},
        },
    )
    small_transcript(folder, "s-old")
    small_transcript(folder, "s-new")
    results = {r.session.id: r.session for r in import_openclaw_agent(store, folder)}
    assert store.current("agent:ops:telegram:direct:7").id == "s-new"
    assert (results["s-old"].key, results["s-old"].status) == (
        "agent:ops:telegram:direct:7",
        "archived",
    )


def test_two_keys_naming_one_transcript_import_it_once(store: Any, tmp_path: Path) -> None:
    folder = make_agent_folder(
        tmp_path,
        "ops",
        {
            "agent:ops:main": {"sessionId": "s-1", "updatedAt": 1_700_000_900_000},
            "agent:ops:alias": {"sessionId": "s-1", "updatedAt": 1_700_000_000_000},
        },
    )
    small_transcript(folder, "s-1")
    (result,) = import_openclaw_agent(store, folder)
    assert result.session.key == "agent:ops:main"
    aliases = result.session.metadata[OPENCLAW_METADATA_KEY]["aliases"]
    assert list(aliases) == ["agent:ops:alias"]
    assert store.current("agent:ops:alias") is None


def test_a_key_whose_transcript_is_missing_gets_an_empty_session(
    store: Any, tmp_path: Path
) -> None:
    folder = make_agent_folder(
        tmp_path,
        "ops",
        {"agent:ops:main": {"sessionId": "s-gone", "updatedAt": 1_700_000_000_000, "label": "L"}},
    )
    (result,) = import_openclaw_agent(store, folder)
    assert result.missing
    assert (result.session.id, result.session.entry_count) == ("s-gone", 0)
    assert store.current("agent:ops:main").id == "s-gone"
    assert result.session.origin.label == "L"


def test_a_session_file_from_another_machine_is_found_by_its_name(
    store: Any, tmp_path: Path
) -> None:
    folder = make_agent_folder(
        tmp_path,
        "ops",
        {
            "agent:ops:slack:channel:c1:thread:t1": {
                "sessionId": "s-1",
                "updatedAt": 1_700_000_000_000,
                "sessionFile": "/home/someone/.openclaw/agents/ops/sessions/s-1-topic-t1.jsonl",
            }
        },
    )
    small_transcript(folder, "s-1", "s-1-topic-t1.jsonl")
    (result,) = import_openclaw_agent(store, folder)
    assert (result.missing, result.entries) == (False, 1)


def test_checkpoint_twins_and_traces_are_not_sessions(store: Any, tmp_path: Path) -> None:
    folder = make_agent_folder(tmp_path, "ops", {})
    small_transcript(folder, "s-1")
    small_transcript(folder, "s-1", "s-1.checkpoint.0b6f0f5e-3c1d-4a2b-9c8d-7e6f5a4b3c2d.jsonl")
    small_transcript(folder, "s-1", "s-1.trajectory.jsonl")
    results = import_openclaw_agent(store, folder)
    assert [r.session.id for r in results] == ["s-1"]


def copy_examples(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLES, tmp_path / "main"))


def test_one_bad_transcript_in_a_folder_writes_nothing(store: Any, tmp_path: Path) -> None:
    folder = copy_examples(tmp_path)
    bad = folder / "sessions" / f"{THREAD}.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5][:40]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TranscriptError) as caught:
        import_openclaw_agent(store, folder)
    assert (caught.value.path, caught.value.line) == (str(bad), 6)
    assert snapshot(store) == []


def test_a_folder_holding_a_session_the_store_has_writes_nothing(
    store: Any, tmp_path: Path
) -> None:
    import_transcript(store, SESSIONS / f"{THREAD}.jsonl")
    before = snapshot(store)
    with pytest.raises(SessionExists):
        import_openclaw_agent(store, EXAMPLES)
    assert snapshot(store) == before


def test_the_same_session_in_two_files_is_refused(store: Any, tmp_path: Path) -> None:
    folder = copy_examples(tmp_path)
    shutil.copy(folder / "sessions" / f"{GROUP}.jsonl", folder / "sessions" / "copy.jsonl")
    with pytest.raises(TranscriptError, match="is also in"):
        import_openclaw_agent(store, folder)
    assert snapshot(store) == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not a map"),
        (b'{"agent:main:main": {"updatedAt": 1}}', "no `sessionId`"),
        (b'{"agent:": {"sessionId": "s"}}', "not a session key"),
    ],
)
def test_a_bad_session_map_is_refused(
    store: Any, tmp_path: Path, content: bytes, reason: str
) -> None:
    folder = make_agent_folder(tmp_path, "ops", {})
    (folder / "sessions" / "sessions.json").write_bytes(content)
    with pytest.raises(TranscriptError, match=reason) as caught:
        import_openclaw_agent(store, folder)
    assert caught.value.path == str(folder / "sessions" / "sessions.json")


def test_a_folder_that_is_not_an_agent_folder_is_refused(store: Any, tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="not an OpenClaw agent folder"):
        import_openclaw_agent(store, tmp_path)
