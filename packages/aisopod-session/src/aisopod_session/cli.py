"""`aisopod-session`: look into and manage conversation sessions from a terminal.

Every command works on the store named by `--db URL` (or `$AISOPOD_SESSION_DB`,
else the embedded default `~/.aisopod/sessions.db`). Read commands print
aligned tables sized to the terminal, or `--json` with stable keys. Long
operations show a progress bar on a terminal and stay quiet when piped.
Errors are one line on stderr and a non-zero exit code (`--debug` shows the
traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, NoReturn, TextIO

import attrs
import orjson

from aisopod_session._compaction import KeepLastTurns, TokenBudget
from aisopod_session._config import RetentionPolicy, parse_duration, parse_size
from aisopod_session._doctor import examine, unopened
from aisopod_session._errors import (
    AisopodError,
    ConfigError,
    InvalidInput,
    InvalidSessionKey,
    SessionExists,
    SessionNotFound,
    StoreNotFound,
    TranscriptError,
)
from aisopod_session._model import Session
from aisopod_session._open import DEFAULT_DB_ENV, default_url, open_store
from aisopod_session._progress_bar import ProgressBar
from aisopod_session._retention import UnmetBudget
from aisopod_session._retention_options import Flag, combined_policy
from aisopod_session._store import SessionStore
from aisopod_session.keys import request_key
from aisopod_session.transfer import (
    DUMP_FORMAT,
    Existing,
    RestoreReport,
    SessionImage,
    copy_store,
    dump_store,
    export_transcript,
    import_openclaw_folder,
    import_transcript,
    restore_store,
)
from aisopod_session.transfer._compressed import CompressedFileError, open_plain
from aisopod_session.web._command import add_serve_command
from aisopod_shared import converter, enable_logging, logger

__all__ = ["main"]

Handler = Callable[[SessionStore, argparse.Namespace, TextIO], int]


# --- output ------------------------------------------------------------------------------


def _width() -> int:
    return max(60, shutil.get_terminal_size((120, 24)).columns)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.4f}"
    return " ".join(str(value).split())


# Free text gives way to the terminal's width; ids, keys, seqs, numbers and times
# never do (people copy them).
_SHRINKS: Final = ("TITLE", "TEXT", "SNIPPET", "VALUE")


def print_table(
    out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]], *, wide: bool = False
) -> None:
    """Aligned columns in the terminal's width, measured in terminal cells (a CJK
    character or an emoji takes two): the widest free-text column gives way first
    (a snippet around its match); with `wide`, nothing is cut."""
    from rich.cells import cell_len  # the one measure of a cell: imported when a table is drawn

    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([cell_len(h), *(cell_len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    budget = _width() - 2 * (len(headers) - 1)
    shrinkable = [] if wide else [i for i, h in enumerate(headers) if h in _SHRINKS]
    while shrinkable and sum(widths) > budget:
        widest = max(shrinkable, key=lambda i: widths[i])
        if widths[widest] <= 12:
            break
        widths[widest] -= 1
    for n, row in enumerate([list(headers), *cells]):
        line = "  ".join(
            _fit(value, widths[i], around=n > 0 and headers[i] == "SNIPPET")
            for i, value in enumerate(row)
        )
        print(line.rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _fit(value: str, width: int, *, around: bool = False) -> str:
    """`value` in `width` terminal cells; cut at its end, or `around` its first `[`
    (a search snippet's highlighted match), which then stands a third of the way in."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(value) <= width:
        return value + " " * (width - cell_len(value))
    hit = value.find("[") if around else -1
    if hit > width // 3:
        value = "…" + value[hit - width // 3 + 1 :]
        if cell_len(value) <= width:
            return set_cell_size(value, width)
    return set_cell_size(value, width - 1) + "…"


def print_json(out: TextIO, value: object) -> None:
    """`value` as JSON (through the one converter), one document, keys as named."""
    data = orjson.dumps(converter.unstructure(value), option=orjson.OPT_INDENT_2)
    out.write(data.decode() + "\n")


@attrs.define
class Ledger:
    """What a command has written so far, for the line an interruption prints."""

    sessions: list[str] = attrs.Factory(list)
    """Ids of the sessions written whole so far."""
    resume: str | None = None
    """How to finish the work, for a command that writes session after session."""

    def wrote(self, session_id: str) -> None:
        self.sessions.append(session_id)

    def summary(self, reads: bool) -> str:
        """What was written: nothing, the sessions written so far, or how to finish."""
        if reads:
            return "nothing was written"
        if self.resume is None:
            return "its one change was made whole or not at all"
        shown = ", ".join(self.sessions[:5]) + (", ..." if len(self.sessions) > 5 else "")
        done = (
            f"{len(self.sessions)} sessions were written whole before it: {shown}"
            if self.sessions
            else "each session is written whole or not at all"
        )
        return f"{done} ({self.resume})"


def session_row(session: Session) -> dict[str, Any]:
    """The stable JSON shape of a session for scripts."""
    return {
        "id": session.id,
        "agent": session.agent_id,
        "key": session.key,
        "user": session.user_id,
        "status": session.status,
        "title": session.title,
        "entries": session.entry_count,
        "messages": session.message_count,
        "compactions": session.compaction_count,
        "tokens": session.usage.total,
        "cost": session.usage.cost,
        "size_bytes": session.size_bytes,
        "created_at": session.created_at.isoformat(),
        "updated_at": session.updated_at.isoformat(),
        "active_at": session.active_at.isoformat(),
        "origin": converter.unstructure(session.origin),
        "metadata": dict(session.metadata),
        "fork_parent": converter.unstructure(session.fork_parent),
        "leaf_seq": session.leaf_seq,
        "version": session.version,
    }


def read_json_file(path: str, *, field: str) -> Any:
    """A JSON file's value; not JSON is a `ConfigError` naming the line and column."""
    data = Path(path).read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ConfigError(
            f"{path}: not JSON at line {err.lineno}, column {err.colno}: {err.msg}", field=field
        ) from err


# --- finding things ----------------------------------------------------------------------


def find_session(store: SessionStore, ref: str) -> Session:
    """A session by id, or a key's current session (`agent:...` or a request key)."""
    with contextlib.suppress(SessionNotFound):
        return store.get(ref)
    try:
        current = store.current(ref)
    except InvalidSessionKey:
        current = None
    if current is None:
        raise SessionNotFound(ref)
    return current


# --- commands -----------------------------------------------------------------------------


def cmd_list(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    page = store.list(
        agent_id=args.agent,
        status=args.status,
        channel=args.channel,
        key_prefix=args.key_prefix,
        user_id=args.user,
        limit=args.limit,
        cursor=args.cursor,
    )
    if args.json:
        print_json(
            out,
            {
                "sessions": [session_row(s) for s in page.sessions],
                "cursor": page.cursor,
                "previous": page.previous,
            },
        )
        return 0
    print_table(
        out,
        ["ID", "KEY", "STATUS", "ENTRIES", "TOKENS", "UPDATED", "TITLE"],
        [
            (s.id, s.key, s.status, s.entry_count, s.usage.total, s.updated_at, s.title)
            for s in page.sessions
        ],
        wide=args.wide,
    )
    _print_cursors(page.cursor, page.previous, out)
    return 0


def cmd_show(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    row = {**session_row(session), "state": dict(store.state(session.id))}
    if args.json:
        print_json(out, row)
        return 0
    for name, value in row.items():
        shown = orjson.dumps(value).decode() if isinstance(value, dict) else _cell(value)
        print(f"{name:>12}  {shown}", file=out)
    return 0


def cmd_state(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    if args.at is not None and not 0 <= args.at <= session.entry_count:
        raise InvalidInput(
            f"the session has {session.entry_count} entries; there is no entry {args.at}",
            field="SEQ",
        )
    state = store.state(session.id, at_seq=args.at)
    if args.json:
        print_json(out, dict(state))
        return 0
    print_table(
        out,
        ["KEY", "VALUE"],
        [(key, orjson.dumps(value).decode()) for key, value in state.items()],
        wide=args.wide,
    )
    return 0


def _entry_row(entry: Any) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "id": entry.id,
        "parent_seq": entry.parent_seq,
        "type": entry.type,
        "role": entry.shown_role,
        "text": entry.text,
        "created_at": entry.created_at.isoformat(),
        "tokens": entry.tokens,
    }


def cmd_history(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    if args.last is not None and (args.before, args.after, args.limit) != (None, None, None):
        raise InvalidInput("stands alone; page with --before or --after and --limit", field="last")
    paged = (args.before, args.after, args.limit) != (None, None, None)
    page = (
        store.history(session.id, before=args.before, after=args.after, limit=args.limit)
        if paged
        else store.history(session.id, last=50 if args.last is None else args.last)
    )
    # The cursor continues the way the page was read: forward after --after.
    option = "--after" if args.after is not None else "--before"
    if args.json:
        print_json(
            out,
            {
                "session": session.id,
                "entries": [{**_entry_row(e), "payload": dict(e.payload)} for e in page.entries],
                "cursor": page.cursor,
                "next": None if page.cursor is None else [option, page.cursor],
            },
        )
        return 0
    print_table(
        out,
        ["SEQ", "TIME", "ROLE", "TEXT"],
        [(e.seq, e.created_at, e.shown_role, e.text) for e in page.entries],
        wide=args.wide,
    )
    if page.cursor is not None:
        which = "later" if option == "--after" else "earlier"
        print(f"({which}: {option} {page.cursor})", file=out)
    return 0


def cmd_context(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    context = store.context(session.id, max_tokens=args.max_tokens)
    if args.json:
        print_json(
            out,
            {
                "session": session.id,
                "model": converter.unstructure(context.model),
                "thinking_level": context.thinking_level,
                "tokens": context.tokens,
                "truncated": context.truncated,
                "messages": [m.to_json() for m in context.messages],
            },
        )
        return 0
    print_table(out, ["ROLE", "TEXT"], [(m.role, m.text) for m in context.messages], wide=args.wide)
    model = f"{context.model.provider}/{context.model.model_id}" if context.model else "-"
    print(
        f"model {model}, thinking {context.thinking_level or '-'}, ~{context.tokens} tokens"
        + (", truncated" if context.truncated else ""),
        file=out,
    )
    return 0


def cmd_search(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    page = store.search(
        args.query,
        agent_id=args.agent,
        key_prefix=args.key_prefix,
        role=args.role,
        limit=args.limit,
        cursor=args.cursor,
    )
    if args.json:
        print_json(out, {"hits": list(page.hits), "cursor": page.cursor, "previous": page.previous})
        return 0
    print_table(
        out,
        ["KEY", "SESSION", "SEQ", "ROLE", "SNIPPET"],
        [(h.key, h.session_id, h.seq, h.role, h.snippet) for h in page.hits],
        wide=args.wide,
    )
    _print_cursors(page.cursor, page.previous, out)
    return 0


def _print_cursors(next_cursor: str | None, previous: str | None, out: TextIO) -> None:
    """The `--cursor` of the pages beside a list's or a search's page, where there are."""
    if next_cursor:
        print(f"(more: --cursor {next_cursor})", file=out)
    if previous:
        print(f"(back: --cursor {previous})", file=out)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "openclaw"
    try:
        with open_plain(path) as handle:
            head = orjson.loads(handle.readline())
    except CompressedFileError as err:
        raise TranscriptError(str(path), None, str(err)) from err
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"{path}: not a transcript, dump or agent folder") from err
    if isinstance(head, dict) and head.get("format") == DUMP_FORMAT:
        return "native"
    return "pi"


def cmd_import(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.path)
    kind = args.format or _detect_format(path)
    if args.agent:
        # A transcript goes to this agent; of an OpenClaw folder, only this agent's
        # folder is imported.
        store = store.for_agent(args.agent)
    existing: Existing = "replace" if args.replace else "skip"
    if kind == "native":
        report = _restore(store, path, args, existing)
        ids = [*report.sessions, *report.skipped]
        results = []
    else:
        args.ledger.resume = "import again to finish: sessions already there are skipped"
        with ProgressBar(f"importing {path.name}") as bar:
            if kind == "openclaw":
                results = import_openclaw_folder(
                    store,
                    path,
                    agent_id=args.agent,
                    skip_bad_lines=args.skip_bad_lines,
                    existing=existing,
                    on_entries=bar.advance,
                )
            else:
                results = [
                    import_transcript(
                        store,
                        path,
                        key=args.key,
                        skip_bad_lines=args.skip_bad_lines,
                        existing=existing,
                        on_entries=bar.advance,
                    )
                ]
        ids = [r.session.id for r in results]
    for result in results:
        for line in result.skipped:
            print(f"skipped {result.path}:{line.line}: {line.reason}", file=sys.stderr)
    held = [r for r in results if r.existed]
    if held:
        print(
            f"{len(held)} of these sessions were already in the store and were left as they"
            " are (--replace to import them again)",
            file=sys.stderr,
        )
    if args.json:
        print_json(out, ids)
        return 0
    sessions = [store.get(session_id) for session_id in ids]
    print_table(
        out,
        ["ID", "KEY", "STATUS", "ENTRIES", "TOKENS", "TITLE"],
        [(x.id, x.key, x.status, x.entry_count, x.usage.total, x.title) for x in sessions],
        wide=args.wide,
    )
    return 0


@contextlib.contextmanager
def _output(path: str | None, binary: bool = False) -> Iterator[IO[Any]]:
    """A private new file (0600), or stdout."""
    if path is None or path == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
        yield handle


def cmd_export(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    if args.format == "native":
        with _output(args.output, binary=True) as handle:
            dump_store(store, handle, session_ids=[session.id])
        return 0
    with _output(args.output) as handle:
        export_transcript(store, session.id, handle)
    return 0


def _entry_total(store: SessionStore) -> int:
    """How many entries the store holds (of its agent, when scoped): a bar's total."""
    return sum(agent.entries for agent in store.stats())


def cmd_dump(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    with (
        ProgressBar("dumping", total=_entry_total(store)) as bar,
        _output(args.output, binary=True) as handle,
    ):
        report = dump_store(store, handle, on_entries=bar.advance)
    print(
        f"dumped {report.sessions} sessions, {report.entries} entries,"
        f" {report.shared_values} user: and agent: state values",
        file=sys.stderr,
    )
    return 0


def _restore(
    store: SessionStore, path: Path, args: argparse.Namespace, existing: Existing
) -> RestoreReport:
    """Restore a dump file, each session put in the ledger once it is written."""
    args.ledger.resume = f"{args.command} again with --skip-existing to finish"

    def written(done: int, image: SessionImage) -> None:
        args.ledger.wrote(image.id)

    try:
        with ProgressBar(f"restoring {path.name}") as bar, open_plain(path) as handle:
            report = restore_store(
                store,
                handle,
                name=str(path),
                replace=existing == "replace",
                skip_existing=existing == "skip",
                progress=written,
                on_entries=bar.advance,
            )
    except SessionExists as err:
        raise InvalidInput(
            f"{err} (--skip-existing leaves such sessions as they are, --replace writes them again)"
        ) from err
    except CompressedFileError as err:
        raise TranscriptError(str(path), None, str(err)) from err
    _kept_note(report)
    if report.skipped:
        print(
            f"{len(report.skipped)} sessions of the dump were already in the store and were"
            " left as they are (--replace to write them again)",
            file=sys.stderr,
        )
    return report


def cmd_restore(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    existing: Existing = "replace" if args.replace else "skip" if args.skip_existing else "error"
    report = _restore(store, Path(args.path), args, existing)
    print(
        f"restored {len(report.sessions)} sessions, {report.entries} entries,"
        f" {report.shared_values} user: and agent: state values",
        file=out,
    )
    return 0


def _kept_note(report: RestoreReport) -> None:
    if report.shared_kept:
        print(
            f"{report.shared_kept} user: and agent: state values were already in the store"
            " and were left as they are (--replace to restore them too)",
            file=sys.stderr,
        )


def cmd_copy(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    try:
        target = open_store(args.to)
    except InvalidInput as err:
        raise InvalidInput(err.reason, field="--to" if err.field == "url" else err.field) from err
    try:
        args.ledger.resume = "copy again to finish: sessions already copied are skipped"

        def copied(done: int, image: SessionImage) -> None:
            args.ledger.wrote(image.id)

        with ProgressBar("copying", total=_entry_total(store)) as bar:
            report = copy_store(store, target, progress=copied, on_entries=bar.advance)
    finally:
        target.close()
    if args.json:
        print_json(
            out,
            {
                "sessions": report.sessions,
                "copied": report.copied,
                "skipped": report.skipped,
                "entries": report.entries,
                "shared_values": report.shared_values,
                "shared_written": report.shared_written,
            },
        )
    else:
        print(
            f"copied {report.copied} sessions ({report.entries} entries), {report.skipped} already"
            f" there; {report.sessions} verified by checksum; {report.shared_values} user: and"
            f" agent: state values verified ({report.shared_written} written)",
            file=out,
        )
    return 0


def cmd_reset(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    before = store.current(args.key)
    if before is None and not args.key.startswith("agent:"):
        # A word is a key only when a session has it: `reset helo` must not
        # start agent:main:helo.
        raise InvalidInput(
            f"{args.key!r} is neither a full key (agent:<agentId>:<rest>) nor one a session has",
            field="key",
        )
    session = store.reset(args.key)
    if args.json:
        print_json(
            out,
            {"key": session.key, "archived": before.id if before else None, "started": session.id},
        )
        return 0
    if before is not None:
        print(f"archived {before.id}", file=out)
    print(f"started {session.id} for {session.key}", file=out)
    return 0


def cmd_delete(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInput("deleting needs --yes when nothing can ask", field="yes")
        answer = input(
            f"delete {session.id} ({session.key or 'no key'}, {session.entry_count} entries)?"
            " [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=out)
            return 1
    store.delete(session.id)
    print(f"deleted {session.id}", file=out)
    return 0


def cmd_title(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    store.patch(session.id, title=args.text)
    print(f"{session.id}: {args.text}", file=out)
    return 0


def cmd_compact(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    strategy = TokenBudget(args.max_tokens) if args.max_tokens else KeepLastTurns(args.keep_turns)
    result = store.compact(session.id, strategy)
    if args.json:
        print_json(
            out,
            {
                "compacted": result.compacted,
                "entry_seq": result.entry.seq if result.entry else None,
                "first_kept_seq": result.first_kept_seq,
                "dropped": result.dropped,
                "tokens_before": result.tokens_before,
            },
        )
    elif result.compacted:
        assert result.entry is not None
        print(
            f"compacted: {result.dropped} entries summarised at seq {result.entry.seq};"
            f" context starts at seq {result.first_kept_seq}",
            file=out,
        )
    else:
        print("nothing to compact", file=out)
    return 0


def cmd_rewind(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    after = store.rewind(session.id, args.seq, summary=args.summary)
    print(f"leaf of {after.id} is now seq {after.leaf_seq}", file=out)
    return 0


def cmd_fork(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    session = find_session(store, args.session)
    fork = store.fork(session.id, args.at, key=args.key)
    print(fork.id, file=out)
    return 0


def cmd_maintain(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    policy = _maintain_policy(args)
    with ProgressBar("removing", unit="sessions", total=0) as bar:
        report = store.maintain(policy, progress=bar.set if policy.mode == "enforce" else None)
    unmet = [_unmet_line(u) for u in report.unmet]
    if args.json:
        print_json(
            out,
            {
                "mode": report.mode,
                "scanned": report.scanned,
                "removed": report.removed,
                "bytes_freed": report.bytes_freed,
                "removals": list(report.removals),
                "unmet": list(report.unmet),
            },
        )
        return 0
    print_table(
        out,
        ["SESSION", "KEY", "STATUS", "REASON", "BYTES", "LAST ACTIVE", "REMOVED"],
        [
            (r.session_id, r.key, r.status, r.reason, r.size_bytes, r.active_at, r.removed)
            for r in report.removals
        ],
        wide=args.wide,
    )
    verb = "removed" if report.mode == "enforce" else "would remove (warn mode; --enforce to act)"
    print(
        f"scanned {report.scanned}; {verb} {len(report.removals)} sessions,"
        f" {report.bytes_to_free} bytes",
        file=out,
    )
    for line in unmet:
        print(line, file=out)
    return 0


def _maintain_policy(args: argparse.Namespace) -> RetentionPolicy:
    """The policy of the flags given and the `--config` file (`_retention_options`)."""
    flags: dict[str, Flag] = {}
    if args.enforce:
        flags["mode"] = Flag("enforce", "")
    if args.prune_after is not None:
        flags["prune_after"] = Flag(
            parse_duration(args.prune_after, field="prune_after"), args.prune_after
        )
    if args.max_sessions is not None:
        flags["max_sessions"] = Flag(args.max_sessions, str(args.max_sessions))
    if args.max_bytes is not None:
        flags["max_bytes"] = Flag(parse_size(args.max_bytes, field="max_bytes"), args.max_bytes)
    config = read_json_file(args.config, field="--config") if args.config else None
    return combined_policy(flags, config, args.config, dry_run=args.dry_run)


def _unmet_line(unmet: UnmetBudget) -> str:
    """A budget out of reach, said plainly."""
    if unmet.limit == "max_bytes":
        what = f"the size budget of {unmet.allowed} bytes: {unmet.remaining} bytes remain"
    else:
        what = (
            f"at most {unmet.allowed} sessions for agent {unmet.agent_id}: {unmet.remaining} remain"
        )
    return (
        f"cannot meet {what} once every session it may remove is gone (the rest are"
        " current sessions active within --prune-after, which are never removed)"
    )


def cmd_stats(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    stats = store.stats()
    if args.json:
        print_json(out, stats)
        return 0
    print_table(
        out,
        ["AGENT", "SESSIONS", "ACTIVE", "ENTRIES", "MESSAGES", "TOKENS", "COST", "BYTES"],
        [
            (
                s.agent_id,
                s.sessions,
                s.active,
                s.entries,
                s.messages,
                s.tokens,
                s.cost,
                s.size_bytes,
            )
            for s in stats
        ],
        wide=args.wide,
    )
    return 0


def cmd_migrate(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    schema = store.schema()
    if args.apply and schema.version < schema.latest:
        store.close()
        with ProgressBar("migrating", unit="migrations"):
            store = open_store(args.db)
        schema = store.schema()
    version = schema.version
    known = schema.migrations
    rows = [
        {"version": n, "name": name, "applied": n <= version}
        for n, name in enumerate(known, start=1)
    ]
    if args.json:
        print_json(out, {"version": version, "latest": len(known), "migrations": rows})
    else:
        print_table(
            out, ["VERSION", "NAME", "APPLIED"], [tuple(r.values()) for r in rows], wide=args.wide
        )
        pending = len(known) - version
        print(
            f"schema version {version} of {len(known)}"
            + (f"; {pending} pending (--apply)" if pending > 0 else ""),
            file=out,
        )
    return 0


def cmd_doctor(store: SessionStore, args: argparse.Namespace, out: TextIO) -> int:
    if args.missing is not None:
        # Nothing to check: the first write makes the store (main says so).
        if args.json:
            print_json(out, {"url": args.missing, "exists": False, "problems": []})
        return 0
    facts = unopened(args.db, args.unopened) if args.unopened else examine(store, args.db)
    problems, warnings = facts["problems"], facts["warnings"]
    if args.json:
        print_json(out, facts)
    else:
        for name, value in facts.items():
            if name not in ("problems", "warnings"):
                shown = orjson.dumps(value).decode() if isinstance(value, dict) else _cell(value)
                print(f"{name:>22}  {shown}", file=out)
        for warning in warnings:
            print(f"warning: {warning}", file=out)
        print("ok" if not problems else "problems:\n  " + "\n  ".join(problems), file=out)
    return 0 if not problems else 1


# --- the parser ---------------------------------------------------------------------------


def _command(
    sub: Any,
    name: str,
    handler: Handler,
    help_text: str,
    example: str,
    *,
    reads: bool = False,
    makes_store: bool = False,
    inputs: Callable[[argparse.Namespace], None] | None = None,
    api_names: dict[str, str] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand. `reads`: it only reads, so it never makes a store (a missing
    one reads as empty). `makes_store`: it adds sessions of its own (import,
    restore, reset), so it may make the store, once its arguments are checked; any
    other command changes what is there, and a missing store is an error. `inputs`:
    checks the command's inputs before its store is opened. `api_names`:
    the API's names for its arguments, where they differ (`{"to_seq": "seq"}`), so
    that errors name the argument as typed."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(
        handler=handler,
        reads=reads,
        makes_store=makes_store,
        inputs=inputs,
        api_names=api_names or {},
        parser_of=parser,
        ledger=Ledger(),
    )
    return parser


def _path_exists(args: argparse.Namespace) -> None:
    """The PATH or FILE a command reads from is there: checked before its store is
    opened, so that a wrong path makes nothing."""
    if not Path(args.path).exists():
        raise InvalidInput(f"{args.path} does not exist", field="path")


def _key(text: str) -> str:
    """A KEY argument, checked by the one rule for keys before any store is opened (a
    bad key is a usage error, and makes nothing); passed on as typed."""
    try:
        request_key(None, text)
    except InvalidSessionKey as err:
        raise argparse.ArgumentTypeError(err.reason) from err
    return text


def _cursor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cursor",
        metavar="TOKEN",
        help="a page's cursor (the page after it) or previous (the page before it)",
    )


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="cut no column to the terminal's width (ids, keys and times never are)",
    )


class _Version(argparse.Action):
    """`--version`: the installed version, read only when asked for (reading package
    metadata costs every command a tenth of a second otherwise)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import version

        parser.exit(message=f"{parser.prog} {version('aisopod-session')}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = _Parser(
        prog="aisopod-session",
        description=textwrap.dedent(__doc__ or "").strip().split("\n\n")[0],
        epilog=textwrap.dedent(
            f"""\
            SESSION is a session id or a session key (the key's current session).
            The store: --db URL, else ${DEFAULT_DB_ENV}, else ~/.aisopod/sessions.db.
            URLs: sqlite:///path/to/sessions.db, postgresql://user@host/db

            example:
              aisopod-session import examples/openclaw/main
              aisopod-session list"""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="URL", default=None, help="the store (see below)")
    parser.add_argument("--debug", action="store_true", help="logs and tracebacks on stderr")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = _command(
        sub,
        "list",
        cmd_list,
        "list sessions, most recently updated first",
        "aisopod-session list --agent main --status active",
        reads=True,
    )
    p.add_argument("--agent", metavar="ID")
    p.add_argument("--status", choices=["active", "idle", "archived"])
    p.add_argument("--channel")
    p.add_argument("--key-prefix", metavar="PREFIX")
    p.add_argument("--user", metavar="ID", help="the sessions with this user")
    p.add_argument("--limit", type=int, default=50)
    _cursor(p)
    _json(p)

    p = _command(
        sub,
        "show",
        cmd_show,
        "show one session's fields and state",
        "aisopod-session show agent:main:main",
        reads=True,
    )
    p.add_argument("session", metavar="SESSION")
    _json(p)

    p = _command(
        sub,
        "state",
        cmd_state,
        "show a session's state: its own keys, its user's (user:) and its agent's (agent:)",
        "aisopod-session state agent:main:telegram:direct:123 --at 12",
        reads=True,
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument(
        "--at",
        type=int,
        metavar="SEQ",
        help="the session's own keys as they were at entry SEQ (user: and agent: keys are"
        " shared, always current)",
    )
    _json(p)

    p = _command(
        sub,
        "history",
        cmd_history,
        "show a session's entries, a page at a time (the last 50 first)",
        "aisopod-session history agent:main:telegram:direct:123 --before 120 --limit 20",
        reads=True,
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--last", type=int, metavar="N", help="the last N entries (default 50)")
    p.add_argument("--before", type=int, metavar="SEQ", help="the page before entry SEQ")
    p.add_argument("--after", type=int, metavar="SEQ", help="the page after entry SEQ")
    p.add_argument("--limit", type=int, metavar="N", help="entries a page (default 50)")
    _json(p)

    p = _command(
        sub,
        "context",
        cmd_context,
        "show what the model would be given",
        "aisopod-session context agent:main:main --max-tokens 8000",
        reads=True,
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--max-tokens", type=int, metavar="N")
    _json(p)

    p = _command(
        sub,
        "search",
        cmd_search,
        "full-text search over message text",
        "aisopod-session search '\"deploy failed\" staging -test' --agent main",
        reads=True,
    )
    p.add_argument("query", metavar="QUERY", help='words, "phrases", prefix*, a OR b, -excluded')
    p.add_argument("--agent", metavar="ID")
    p.add_argument("--key-prefix", metavar="PREFIX")
    p.add_argument(
        "--role",
        metavar="ROLE",
        help="hits of this role, as search shows it (user, assistant, tool, system, custom,"
        " branchSummary, compactionSummary, ...)",
    )
    p.add_argument("--limit", type=int, default=20, metavar="N")
    _cursor(p)
    _json(p)

    p = _command(
        sub,
        "import",
        cmd_import,
        "import a pi transcript (.jsonl or .jsonl.zst), an OpenClaw folder (~/.openclaw,"
        " its agents/, one agent's folder or its sessions/) or a native dump",
        "aisopod-session import ~/.openclaw/agents/main",
        makes_store=True,
        inputs=_path_exists,
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--format", choices=["pi", "openclaw", "native"], help="default: guessed from the path"
    )
    p.add_argument(
        "--agent",
        metavar="ID",
        help="import into this agent's sessions (of an OpenClaw folder: only this agent's)",
    )
    p.add_argument("--key", metavar="KEY", type=_key, help="bind a transcript to this key")
    p.add_argument(
        "--skip-bad-lines", action="store_true", help="skip (and report) lines that are not JSON"
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="write sessions already in the store again (default: leave them as they are)",
    )
    _json(p)

    p = _command(
        sub,
        "export",
        cmd_export,
        "export a session as a transcript (stdout by default)",
        "aisopod-session export agent:main:main -o main.jsonl",
        reads=True,
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--format", choices=["pi", "native"], default="pi")
    p.add_argument("-o", "--output", metavar="FILE")

    p = _command(
        sub,
        "dump",
        cmd_dump,
        "write the whole store as native JSONL",
        "aisopod-session dump -o backup.jsonl",
        reads=True,
    )
    p.add_argument("-o", "--output", metavar="FILE")

    p = _command(
        sub,
        "restore",
        cmd_restore,
        "write a native dump into the store",
        "aisopod-session --db sqlite:///new.db restore backup.jsonl",
        makes_store=True,
        inputs=_path_exists,
    )
    p.add_argument("path", metavar="FILE")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--replace",
        action="store_true",
        help="overwrite sessions with the same id, and user: and agent: state values with the"
        " same key (default: a session already there is an error; the store's state values"
        " are kept)",
    )
    group.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave sessions already in the store as they are (to finish a restore that stopped)",
    )

    p = _command(
        sub,
        "copy",
        cmd_copy,
        "copy every session to another store (resumable, checksummed)",
        "aisopod-session copy --to postgresql://gateway@db.internal/aisopod",
    )
    p.add_argument("--to", required=True, metavar="URL")
    _json(p)

    p = _command(
        sub,
        "reset",
        cmd_reset,
        "start a new session for a key (the old one is archived)",
        "aisopod-session reset agent:main:main",
        makes_store=True,
    )
    p.add_argument("key", metavar="KEY", type=_key)
    _json(p)

    p = _command(
        sub,
        "delete",
        cmd_delete,
        "delete a session and its entries (asks first, unless --yes)",
        "aisopod-session delete agent:main:main --yes",
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--yes", action="store_true", help="do not ask")

    p = _command(
        sub,
        "title",
        cmd_title,
        "set a session's title",
        "aisopod-session title agent:main:main 'Lisbon weekend'",
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("text", metavar="TEXT")

    p = _command(
        sub,
        "compact",
        cmd_compact,
        "summarise the start of a session's context",
        "aisopod-session compact agent:main:main --keep-turns 10",
        api_names={"turns": "keep_turns", "budget": "max_tokens"},
    )
    p.add_argument("session", metavar="SESSION")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--keep-turns", type=int, default=10, metavar="N")
    group.add_argument("--max-tokens", type=int, metavar="N")
    _json(p)

    p = _command(
        sub,
        "rewind",
        cmd_rewind,
        "move a session's leaf back (nothing is deleted)",
        "aisopod-session rewind agent:main:main 42",
        api_names={"to_seq": "seq"},
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("seq", type=int, metavar="SEQ")
    p.add_argument("--summary", help="record what the abandoned branch did")

    p = _command(
        sub,
        "fork",
        cmd_fork,
        "copy a session's active path into a new session",
        "aisopod-session fork agent:main:main --at 42",
    )
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--at", type=int, metavar="SEQ")
    p.add_argument(
        "--key", metavar="KEY", type=_key, help="make the fork this key's current session"
    )

    p = _command(
        sub,
        "maintain",
        cmd_maintain,
        "retention: report (default) or remove old sessions",
        "aisopod-session maintain --prune-after 30d --max-sessions 500 --enforce",
        api_names={"mode": "enforce"},
    )
    p.description = textwrap.fill(
        "Retention: report (default) or remove old sessions. Each setting comes from its"
        " flag, else from --config, else from the default (warn, 30d, 500 per agent, no size"
        " budget); a flag and the file giving one setting different values is an error."
        " `mode: enforce` in the file enforces like --enforce; --dry-run only reports."
        " A budget it cannot meet (current sessions active within --prune-after are never"
        " removed) is reported as such.",
        width=80,
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--enforce", action="store_true", help="remove, not just report")
    group.add_argument(
        "--dry-run", action="store_true", help="only report, even when --config says enforce"
    )
    p.add_argument("--prune-after", metavar="AGE", help="inactive this long goes (default 30d)")
    p.add_argument(
        "--max-sessions", type=int, metavar="N", help="per agent, least recently active go"
    )
    p.add_argument("--max-bytes", metavar="SIZE", help="a size budget, e.g. 2gb")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="an OpenClaw `session` section (JSON) whose `maintenance` gives the policy",
    )
    _json(p)

    p = _command(
        sub,
        "stats",
        cmd_stats,
        "sessions, entries, tokens and size per agent",
        "aisopod-session stats --json",
        reads=True,
    )
    _json(p)

    p = _command(
        sub,
        "migrate",
        cmd_migrate,
        "show (or --apply) schema migrations",
        "aisopod-session migrate --apply",
    )
    p.add_argument("--apply", action="store_true")
    _json(p)

    p = _command(
        sub,
        "doctor",
        cmd_doctor,
        "check integrity, settings, permissions and schema version",
        "aisopod-session doctor",
        reads=True,
    )
    _json(p)
    add_serve_command(sub, _command)
    return parser


_API_NAMES: Final = {"agent_id": "agent", "user_id": "user", "at_seq": "at"}
"""The API's names for arguments every command spells alike."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help for usage)\n")


def _argument_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """How the command line spells each argument: `SEQ`, `--max-tokens`."""
    names = {"url": "--db"}
    for action in parser._actions:
        if action.option_strings:
            names[action.dest] = max(action.option_strings, key=len)
        elif isinstance(action.metavar, str):
            names[action.dest] = action.metavar
    return names


def _message(err: AisopodError, args: argparse.Namespace) -> str:
    """The error in the command's own words: a field of the API (`to_seq`) is
    named as the command's argument for it (`SEQ`)."""
    if not isinstance(err, InvalidInput) or not err.field:
        return str(err)
    dest = {**_API_NAMES, **args.api_names}.get(err.field, err.field)
    return f"{_argument_names(args.parser_of).get(dest, err.field)}: {err.reason}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    enable_logging()
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.debug else "WARNING", format="{level}: {message}")
    args.db = args.db or default_url()
    args.missing = None
    args.unopened = None
    reads = args.reads or (args.command == "migrate" and not args.apply)
    try:
        if args.inputs is not None:
            args.inputs(args)
        try:
            store = open_store(args.db, migrate=args.command != "migrate", create=args.makes_store)
        except StoreNotFound as err:
            args.missing = err.url
            if not reads:
                raise  # nothing there to change: said as "no sessions yet"
            # A read never makes a store: it reads an empty one, and says so.
            store = open_store("sqlite:///:memory:", migrate=args.command != "migrate")
        except (AisopodError, OSError) as err:
            if args.command != "doctor":
                raise
            # A store that does not open is what doctor reports on.
            args.unopened = err
            store = open_store("sqlite:///:memory:")
        try:
            code: int = args.handler(store, args, out)
        finally:
            store.close()
    except BrokenPipeError:
        # `aisopod-session list | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"aisopod-session: interrupted; {args.ledger.summary(reads)}", file=sys.stderr)
        return 130
    except (AisopodError, OSError) as err:
        if args.debug:
            raise
        if isinstance(err, StoreNotFound):
            message = _no_store_yet(err.url)
        elif isinstance(err, AisopodError):
            message = _message(err, args)
        else:
            message = f"{err.strerror}: {err.filename}" if err.filename else str(err)
        if args.missing is not None and not isinstance(err, StoreNotFound):
            message += f" ({_no_store_yet(args.missing)})"
        elif args.ledger.sessions:
            message += f"; {args.ledger.summary(reads)}"
        print(f"aisopod-session: error: {message}", file=sys.stderr)
        return 1
    if args.missing is not None:
        print(f"aisopod-session: {_no_store_yet(args.missing)}", file=sys.stderr)
    return code


def _no_store_yet(url: str) -> str:
    return f"no sessions yet: there is no store at {url}"


if __name__ == "__main__":
    raise SystemExit(main())
