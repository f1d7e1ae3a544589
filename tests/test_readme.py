"""The README's examples, run for real: every Python block and the top section's commands.

Each ```python block runs in a fresh namespace, in a temporary working
directory, with `HOME` pointed at a temporary folder and
`AISOPOD_SESSION_DB` unset, so the default store (`~/.aisopod/sessions.db`)
is a fresh file of the test's own. A block that uses top-level `await` runs
as a coroutine. No block is skipped.

One substitution is made, for the PostgreSQL example: the server it names,
`postgresql://gateway@db.internal/aisopod`, is a placeholder. Wherever that
URL is a string in a block's code (not in a comment), it becomes the suite's
own PostgreSQL server (`postgres_dsn`, see `tests/postgres.py`) with a fresh
schema of the test's own in place of the block's `schema=`; the URL's other
options (`pool_max=20`) are kept.

The ```sh blocks before the first section run as subprocesses from the
repository root against a fresh default store (a temporary `HOME`,
`AISOPOD_SESSION_DB` unset): `uv run aisopod-session ...` runs this
environment's `python -m aisopod_session ...`, as `tests/session/test_cli.py`
does. Only `uv run pytest`, the suite itself, is not run from within it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import io
import os
import re
import shlex
import stat
import subprocess
import sys
import tokenize
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

import pytest

from aisopod_session import SessionStore, open_store
from aisopod_session._store import engine_of
from aisopod_session.adapters import _common
from aisopod_session.adapters.langchain import AisopodChatMessageHistory
from aisopod_session.adapters.openai_agents import AisopodSession
from tests.session.postgres_schema import temporary_schema

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

PLACEHOLDER_SERVER = "postgresql://gateway@db.internal/aisopod"
"""The PostgreSQL server the README's examples name; it does not exist."""

_PLACEHOLDER_URL = re.compile(re.escape(PLACEHOLDER_SERVER) + r"(?:\?(?P<query>[^\"'\s]*))?")
_FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")


class Block(NamedTuple):
    """A fenced code block of the README."""

    lang: str
    section: str
    """The title of the heading the block is under."""
    line: int
    """The line of its opening fence (1-based)."""
    code: str

    @property
    def test_id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{slug}-line{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order, with the heading each is under.

    Fences are ``` lines: one with or without a language opens a block, a
    bare one closes it. Headings inside blocks (a shell comment) are code.
    """
    blocks: list[Block] = []
    section = ""
    opened: tuple[str, int] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line)
        if opened is None:
            if fence:
                opened, lines = (fence["lang"], number), []
            elif heading := _HEADING.match(line):
                section = heading["title"]
        elif fence and not fence["lang"]:
            blocks.append(Block(opened[0], section, opened[1], "\n".join(lines) + "\n"))
            opened = None
        else:
            lines.append(line)
    assert opened is None, f"README.md: the block opened on line {opened[1]} is never closed"
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON_BLOCKS = [block for block in BLOCKS if block.lang == "python"]
TITLE = "aisopod-session"
"""The README's title: the blocks under it, before the first section, are its top section."""
TOP_COMMANDS = [block for block in BLOCKS if block.lang == "sh" and block.section == TITLE]
assert TOP_COMMANDS, f"README.md: no ```sh block under its title, {TITLE!r}"


# --- the Python blocks ------------------------------------------------------------------


def names_placeholder_server(code: str) -> bool:
    """Whether a string in `code` (not a comment) names the placeholder PostgreSQL server."""
    return any(
        token.type == tokenize.STRING and PLACEHOLDER_SERVER in token.string
        for token in tokenize.generate_tokens(io.StringIO(code).readline)
    )


def with_server(code: str, store_url: str) -> str:
    """`code` with the placeholder server's URL in its strings replaced by `store_url`.

    The replacement keeps the placeholder's options except `schema`, which
    `store_url` sets. Comments are left as they are.
    """

    def substitute(match: re.Match[str]) -> str:
        options = [(k, v) for k, v in parse_qsl(match["query"] or "") if k != "schema"]
        return f"{store_url}&{urlencode(options)}" if options else store_url

    lines = code.splitlines(keepends=True)
    strings = [
        token
        for token in tokenize.generate_tokens(io.StringIO(code).readline)
        if token.type == tokenize.STRING and PLACEHOLDER_SERVER in token.string
    ]
    for token in reversed(strings):  # from the end, so earlier offsets stay right
        (row, start), (end_row, end) = token.start, token.end
        assert row == end_row, "a URL in a string spanning lines"
        line = lines[row - 1]
        lines[row - 1] = line[:start] + _PLACEHOLDER_URL.sub(substitute, token.string) + line[end:]
    return "".join(lines)


def run_block(code: str, filename: str) -> dict[str, Any]:
    """Run `code` in a fresh namespace (as a coroutine if it awaits at top level)."""
    compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    if compiled.co_flags & inspect.CO_COROUTINE:
        coroutine = eval(compiled, namespace)
        asyncio.run(coroutine)
    else:
        exec(compiled, namespace)
    return namespace


def close_what_it_opened(namespace: dict[str, Any]) -> None:
    """Close the stores and adapter sessions a block left in its namespace."""
    backends: set[int] = set()
    for value in namespace.values():
        if isinstance(value, AisopodSession | AisopodChatMessageHistory):
            value.close()
        elif isinstance(value, SessionStore) and id(engine_of(value).backend) not in backends:
            # A store's handles (for_agent) share its backend; it is closed once.
            backends.add(id(engine_of(value).backend))
            value.close()


@pytest.fixture(name="shared_stores")
def shared_stores_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The adapters' stores opened from URLs, kept for this test alone and closed after it.

    `RunnableWithMessageHistory` makes a history per call and never closes
    it, so the store the histories share stays open for the process, as it
    would in an application. Here that store is in the test's temporary
    `HOME`: the test gives the adapters a registry of their own and closes
    what is left in it before that folder goes.
    """
    registry = _common._Shared()
    monkeypatch.setattr(_common, "_SHARED", registry)
    yield
    for store, _ in list(registry._stores.values()):
        store.close()


@pytest.fixture(name="home")
def home_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary `HOME` (so the default store is a fresh file) and working directory."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AISOPOD_SESSION_DB", raising=False)
    monkeypatch.chdir(work)
    return home


def default_store(home: Path) -> Path:
    """Where `open_store()` keeps its store for a user whose home is `home`."""
    return home / ".aisopod" / "sessions.db"


def check_twenty_lines(namespace: dict[str, Any], home: Path) -> None:
    """The session the example made is in the default store, with its turn and its
    state: read back as set, the session's key gone after the rewind, the user's kept."""
    assert namespace["found"].text == "plan a trip"
    assert namespace["hits"], "the search found nothing"
    assert namespace["state"] == {"step": "dates", "user:lang": "pt"}
    assert default_store(home).exists()
    with open_store() as store:
        session = store.get(namespace["session"].id)
        assert session.entry_count >= 4
        assert session.user_id == "123"  # resolve: the direct chat's peer
        assert store.state(session.id) == {"user:lang": "pt"}  # rewound to entry 2
        assert store.user_state("123") == {"lang": "pt"}
        fork = store.get(namespace["fork"].id)
        assert fork.id != session.id  # a session of its own
        assert store.state(fork.id) == {"user:lang": "pt"}  # the same user


def check_postgres(namespace: dict[str, Any], home: Path) -> None:
    """The store works, on PostgreSQL, and nothing was written under HOME."""
    store = namespace["store"]
    assert store.url.startswith("postgresql://")
    session = store.get_or_create("agent:main:readme")
    current = store.current("agent:main:readme")
    assert current is not None
    assert current.id == session.id
    assert not default_store(home).exists()


def check_openai_agents(namespace: dict[str, Any], home: Path) -> None:
    """The items came back as given, from the default store."""
    assert namespace["items"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
    ]
    assert default_store(home).exists()


def check_langchain(namespace: dict[str, Any], home: Path) -> None:
    """The second turn was shown the first; both are in the default store."""
    assert namespace["reply"].content == "messages so far: 3"
    namespace["history"].close()
    history = AisopodChatMessageHistory("user-42")
    try:
        assert [message.type for message in history.messages] == ["human", "ai", "human", "ai"]
    finally:
        history.close()
    assert default_store(home).exists()


CHECKS: dict[tuple[str, int], Callable[[dict[str, Any], Path], None]] = {
    ("In 20 lines", 0): check_twenty_lines,
    ("PostgreSQL", 0): check_postgres,
    ("The one-line switch for agent frameworks", 0): check_openai_agents,
    ("The one-line switch for agent frameworks", 1): check_langchain,
}
"""What to assert after a block ran, by its section and its place among the section's
Python blocks."""


def block_place(block: Block) -> tuple[str, int]:
    """A Python block's section and its place among the section's Python blocks."""
    same_section = [b for b in PYTHON_BLOCKS if b.section == block.section]
    return block.section, same_section.index(block)


def test_every_check_has_its_block() -> None:
    """A check names a Python block that exists (a README edit that moves one shows here)."""
    assert set(CHECKS) <= {block_place(block) for block in PYTHON_BLOCKS}


@pytest.mark.usefixtures("shared_stores")
# The examples use no API their framework's installed version deprecates.
@pytest.mark.filterwarnings("error::DeprecationWarning")
@pytest.mark.filterwarnings("error::PendingDeprecationWarning")
@pytest.mark.parametrize("block", [pytest.param(b, id=b.test_id) for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, home: Path, request: pytest.FixtureRequest) -> None:
    """The block runs as written (but for the one substitution the module docstring names)."""
    code = block.code
    with ExitStack() as stack:
        if names_placeholder_server(code):
            dsn = request.getfixturevalue("postgres_dsn")  # only such a block starts a server
            schema = f"readme_{uuid.uuid4().hex[:12]}"
            code = with_server(code, stack.enter_context(temporary_schema(dsn, schema)))
            assert not names_placeholder_server(code)
        namespace = run_block(code, f"README.md, line {block.line}")
        try:
            check = CHECKS.get(block_place(block))
            if check is not None:
                check(namespace, home)
        finally:
            close_what_it_opened(namespace)


# --- the commands of the top section ----------------------------------------------------


def commands(block: Block) -> list[list[str]]:
    """The block's command lines as argument lists (comments dropped)."""
    return [argv for line in block.code.splitlines() if (argv := shlex.split(line, comments=True))]


PROGRAMS = {"aisopod-session": [sys.executable, "-m", "aisopod_session"]}
"""What `uv run PROGRAM` runs here: this environment's own, as `uv run` would."""

NOT_RUN = {"pytest"}
"""`uv run pytest` is the suite itself."""


def table_rows(out: str) -> list[str]:
    """The rows of a table the command printed: the lines after its header's rule."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    return [line for line in lines[rule + 1 :] if line.strip()]


def check_import(out: str, db: Path) -> None:
    """It made the default store, private to its owner, and listed the sessions it made."""
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert "agent:main:main" in out


def check_list(out: str, db: Path) -> None:
    """The sessions, the example's main chat among them."""
    assert any(row.split()[1] == "agent:main:main" for row in table_rows(out))


def check_history(out: str, db: Path) -> None:
    """The last entries (at most 10), oldest first, then how to get the page before."""
    rows = table_rows(out)
    if rows[-1].startswith("(earlier: --before "):
        rows = rows[:-1]
    seqs = [int(row.split()[0]) for row in rows]
    assert 0 < len(seqs) <= 10
    assert seqs == sorted(seqs)


def check_search(out: str, db: Path) -> None:
    """It found the staging deploy, highlighted.

    The snippet is cut to the terminal's width before the phrase's end, so
    the hit is recognised by its session: the one whose title names staging.
    """
    with open_store(f"sqlite:///{db}") as store:
        staging = [s.id for s in store.list().sessions if "staging" in (s.title or "")]
    assert staging
    rows = table_rows(out)
    assert any(session_id in row for row in rows for session_id in staging)
    assert "[deploy]" in out


def check_context(out: str, db: Path) -> None:
    """What the model would be given: messages, the first from the user."""
    rows = table_rows(out)
    assert rows
    assert rows[0].split()[0] == "user"


COMMAND_CHECKS: dict[str, Callable[[str, Path], None]] = {
    "import": check_import,
    "list": check_list,
    "history": check_history,
    "search": check_search,
    "context": check_context,
}
"""What each `aisopod-session` command of the top section must print, by command."""


def test_top_section_commands_run_on_a_fresh_store(tmp_path: Path) -> None:
    """The import, then each command after it, as the README shows them; the import runs twice."""
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "AISOPOD_SESSION_DB"}
    env["HOME"] = str(home)
    db = home / ".aisopod" / "sessions.db"

    def run(program: str, args: list[str]) -> str:
        argv = [*PROGRAMS[program], *args]
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
        )
        assert done.returncode == 0, f"{program} {shlex.join(args)}: {done.stderr}"
        return done.stdout

    ran: list[list[str]] = []
    for argv in (argv for block in TOP_COMMANDS for argv in commands(block)):
        assert argv[:2] == ["uv", "run"], f"not a `uv run` command: {shlex.join(argv)}"
        program, *args = argv[2:]
        if program in NOT_RUN:
            continue
        assert program in PROGRAMS, f"no way to run {program!r} here: {shlex.join(argv)}"
        assert args[0] in COMMAND_CHECKS, f"nothing to check for {shlex.join(argv)}"
        COMMAND_CHECKS[args[0]](run(program, args), db)
        ran.append(args)
    assert [args[0] for args in ran] == ["import", "list", "history", "search", "context"]

    again = run("aisopod-session", ran[0])
    assert "agent:main:main" in again
