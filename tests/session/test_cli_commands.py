"""Commands people reach for: history pages, delete, title, reset that says what it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from aisopod_session.cli import main
from tests.session.cli_process import EXAMPLE


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
    run_json(capsys, shared_database_url, "import", str(EXAMPLE))
    return shared_database_url


def test_history_pages_back_and_forth_by_the_cursor_it_prints(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The main chat has 16 entries: pages of 5 backwards, then forwards."""
    page = run_json(capsys, db, "history", "agent:main:main", "--limit", "5")
    seqs = [[e["seq"] for e in page["entries"]]]
    while page["next"] is not None:
        option, cursor = page["next"]
        assert (option, cursor) == ("--before", page["cursor"])
        page = run_json(
            capsys, db, "history", "agent:main:main", option, str(cursor), "--limit", "5"
        )
        seqs.append([e["seq"] for e in page["entries"]])
    assert seqs == [[12, 13, 14, 15, 16], [7, 8, 9, 10, 11], [2, 3, 4, 5, 6], [1]]
    forward = run_json(capsys, db, "history", "agent:main:main", "--after", "10", "--limit", "4")
    assert [e["seq"] for e in forward["entries"]] == [11, 12, 13, 14]
    assert forward["next"] == ["--after", 14]
    code, out, _ = run(capsys, db, "history", "agent:main:main", "--limit", "5")
    assert code == 0
    assert out.splitlines()[-1] == "(earlier: --before 12)"
    code, _, err = run(capsys, db, "history", "agent:main:main", "--last", "3", "--before", "9")
    assert code == 1
    assert err.startswith("aisopod-session: error: --last: ")


@pytest.mark.parametrize(
    ("command", "items", "item"),
    [(("list",), "sessions", "id"), (("search", "the OR a"), "hits", "seq")],
)
def test_list_and_search_page_forward_then_back_by_the_cursors_they_print(
    db: str, capsys: pytest.CaptureFixture[str], command: tuple[str, ...], items: str, item: str
) -> None:
    """`cursor` goes on to the end, `previous` comes back the same pages, each by --cursor."""
    every = [row[item] for row in run_json(capsys, db, *command, "--limit", "100")[items]]
    paged = (*command, "--limit", "2")
    page = run_json(capsys, db, *paged)
    assert page["previous"] is None
    forward = [[row[item] for row in page[items]]]
    while page["cursor"] is not None:
        page = run_json(capsys, db, *paged, "--cursor", page["cursor"])
        forward.append([row[item] for row in page[items]])
    assert len(forward) > 2
    assert [value for rows in forward for value in rows] == every
    backward = [forward[-1]]
    while page["previous"] is not None:
        page = run_json(capsys, db, *paged, "--cursor", page["previous"])
        backward.append([row[item] for row in page[items]])
    assert backward == forward[::-1]
    # In a table, the second page names the cursors of the pages beside it.
    second = run_json(capsys, db, *paged, "--cursor", page["cursor"])
    code, out, _ = run(capsys, db, *paged, "--cursor", page["cursor"])
    assert code == 0
    assert out.splitlines()[-2:] == [
        f"(more: --cursor {second['cursor']})",
        f"(back: --cursor {second['previous']})",
    ]
    code, _, err = run(capsys, db, *paged, "--cursor", "before:3")
    assert (code, err.count("\n")) == (1, 1)
    assert err.startswith("aisopod-session: error: --cursor: not a ")


def test_title_and_delete(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, db, "title", "agent:main:main", "Porto instead")
    assert code == 0, err
    shown = run_json(capsys, db, "show", "agent:main:main")
    assert shown["title"] == "Porto instead"
    code, out, err = run(capsys, db, "delete", "agent:main:main")  # stdin is not a terminal
    assert code == 1
    assert "--yes" in err
    assert run_json(capsys, db, "show", shown["id"])["id"] == shown["id"]
    code, out, _ = run(capsys, db, "delete", "agent:main:main", "--yes")
    assert (code, out) == (0, f"deleted {shown['id']}\n")
    code, _, err = run(capsys, db, "show", shown["id"])
    assert code == 1
    assert "no session" in err


def test_reset_says_what_it_archived_and_started_and_invents_no_key(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_json(capsys, db, "show", "agent:main:main")["id"]
    code, out, _ = run(capsys, db, "reset", "agent:main:main")
    assert code == 0
    archived, started = out.splitlines()
    assert archived == f"archived {before}"
    assert started.startswith("started ")
    assert started.endswith(" for agent:main:main")
    code, _, err = run(capsys, db, "reset", "helo")
    assert code == 1
    assert err.startswith("aisopod-session: error: KEY: 'helo' is neither a full key")
    assert run_json(capsys, db, "list", "--key-prefix", "agent:main:helo")["sessions"] == []
    fresh = run_json(capsys, db, "reset", "agent:main:brand-new")
    assert fresh["archived"] is None
    assert fresh["key"] == "agent:main:brand-new"


ORPHAN = "e1b0c9d8-7a6f-4e5d-8c4b-3a2f1e0d9c8b"
"""The example's one session without a key: the only one retention may take here."""


def test_maintain_says_when_a_budget_is_out_of_reach(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four keys' current sessions, active inside a long window, are never removed."""
    args = ("maintain", "--prune-after", "3650d", "--max-sessions", "2", "--max-bytes", "1kb")
    report = run_json(capsys, db, *args)
    assert [r["session_id"] for r in report["removals"]] == [ORPHAN]
    left = sum(s["size_bytes"] for s in run_json(capsys, db, "list")["sessions"]) - next(
        r["size_bytes"] for r in report["removals"]
    )
    assert report["unmet"] == [
        {"limit": "max_sessions", "agent_id": "main", "allowed": 2, "remaining": 4},
        {"limit": "max_bytes", "agent_id": None, "allowed": 1024, "remaining": left},
    ]
    code, out, _ = run(capsys, db, *args)
    assert code == 0
    assert out.splitlines()[-2:] == [
        "cannot meet at most 2 sessions for agent main: 4 remain once every session it may"
        " remove is gone (the rest are current sessions active within --prune-after, which"
        " are never removed)",
        f"cannot meet the size budget of 1024 bytes: {left} bytes remain once every session"
        " it may remove is gone (the rest are current sessions active within --prune-after,"
        " which are never removed)",
    ]
    met = run_json(capsys, db, "maintain", "--prune-after", "3650d", "--max-sessions", "4")
    assert (met["unmet"], met["removals"][0]["session_id"]) == ([], ORPHAN)


def test_maintain_combines_flags_and_config_and_refuses_a_contradiction(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "session.json"
    config.write_text(
        json.dumps({"maintenance": {"mode": "enforce", "pruneAfter": "3650d", "maxEntries": 4}})
    )
    code, _, err = run(capsys, db, "maintain", "--config", str(config), "--max-sessions", "3")
    assert code == 1
    assert err == (
        f"aisopod-session: error: --max-sessions: 3 contradicts maintenance.maxEntries = 4"
        f" in {config} (give the setting in one place, or the same value in both)\n"
    )
    preview = run_json(capsys, db, "maintain", "--config", str(config), "--dry-run")
    assert (preview["mode"], preview["removed"]) == ("warn", 0)
    assert [r["session_id"] for r in preview["removals"]] == [ORPHAN]
    # The file's mode enforces; a flag giving the file's own value is no contradiction.
    done = run_json(capsys, db, "maintain", "--config", str(config), "--max-sessions", "4")
    assert (done["mode"], done["removed"]) == ("enforce", 1)
    assert len(run_json(capsys, db, "list")["sessions"]) == 4
    config.write_text(json.dumps({"maintenance": {"mode": "warn"}}))
    code, _, err = run(capsys, db, "maintain", "--config", str(config), "--enforce")
    assert code == 1
    assert err.startswith("aisopod-session: error: --enforce: contradicts maintenance.mode =")
    config.write_text(json.dumps({"maintenance": {"pruneAfter": "soon"}}))
    code, _, err = run(capsys, db, "maintain", "--config", str(config))
    assert (code, err) == (
        1,
        f"aisopod-session: error: --config: {config}: session.maintenance.pruneAfter: must be"
        " a duration such as 30d or 12h\n",
    )


def test_context_within_a_budget_starts_with_a_turn_or_says_what_it_needs(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full = run_json(capsys, db, "context", "agent:main:main")
    cut = run_json(capsys, db, "context", "agent:main:main", "--max-tokens", "600")
    assert cut["truncated"]
    assert cut["messages"][0]["role"] not in ("assistant", "tool")
    assert cut["messages"] == full["messages"][-len(cut["messages"]) :]
    roomy = run_json(capsys, db, "context", "agent:main:main", "--max-tokens", str(full["tokens"]))
    assert (roomy["truncated"], roomy["messages"]) == (False, full["messages"])
    code, out, err = run(capsys, db, "context", "agent:main:main", "--max-tokens", "100")
    assert (code, out) == (1, "")
    assert err.startswith(
        "aisopod-session: error: --max-tokens: 100 tokens cannot hold the last user message"
    )


def test_role_names_are_one_in_history_context_and_search(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The main chat's entry 12 is an abandoned branch's summary."""
    history = run_json(capsys, db, "history", "agent:main:main")
    by_seq = {e["seq"]: e["role"] for e in history["entries"]}
    assert (by_seq[12], by_seq[13], by_seq[14]) == ("branchSummary", "model_change", "user")
    context = run_json(capsys, db, "context", "agent:main:main")
    assert "branchSummary" in [m["role"] for m in context["messages"]]
    (hit,) = run_json(capsys, db, "search", "rainy")["hits"]
    assert (hit["seq"], hit["role"]) == (12, "branchSummary")
    every = run_json(capsys, db, "search", "the OR a OR to", "--limit", "100")["hits"]
    shown = {h["role"] for h in every}
    assert {"user", "assistant", "branchSummary"} <= shown
    for role in shown:
        hits = run_json(capsys, db, "search", "the OR a OR to", "--role", role, "--limit", "100")
        assert {h["role"] for h in hits["hits"]} == {role}
        assert len(hits["hits"]) == sum(1 for h in every if h["role"] == role)


def test_what_people_type_from_is_never_cut(
    db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a narrow terminal: keys, ids and times whole, a snippet cut around its match;
    with --wide, nothing cut."""
    monkeypatch.setenv("COLUMNS", "60")
    sessions = run_json(capsys, db, "list")["sessions"]
    code, out, _ = run(capsys, db, "list")
    assert code == 0
    for session in sessions:
        assert session["key"] is None or session["key"] in out
        assert session["id"] in out
    assert "…" in out  # titles gave way
    code, out, _ = run(capsys, db, "list", "--wide")
    assert "…" not in out
    assert all(s["title"] in out for s in sessions if s["title"])
    code, out, _ = run(capsys, db, "search", "rainy")
    assert "[rainy]" in out.splitlines()[-1]
    assert "agent:main:main" in out


def test_columns_line_up_in_terminal_cells(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A key of wide characters (two cells each) does not push the columns after it."""
    assert run(capsys, db, "reset", "agent:main:東京🌸")[0] == 0
    out = run(capsys, db, "list", "--status", "active")[1]
    header, _, *rows = out.splitlines()
    status_at = cell_len(header[: header.index("STATUS")])
    assert [cell_len(row[: row.index(" active ") + 1]) for row in rows] == [status_at] * len(rows)
    assert any("agent:main:東京🌸 " in row for row in rows)
