"""Code that runs in other processes: concurrent writers and a writer to kill.

Run as `python -m tests.session.workers crash-writers URL BATCH` for the kill
tests (`tests/reliability/killed_writer.py`);
the functions are targets for `multiprocessing` (spawn) in the concurrency tests.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from typing import Any, NamedTuple

from aisopod_session import open_store
from aisopod_shared import Message


def append_from_threads(
    url: str, shared_id: str, own_ids: list[str], worker: int, threads: int, count: int
) -> None:
    """Each of `threads` threads appends `count` messages to the shared session and
    `count` to a session of its own; texts name the process, thread and number."""
    store = open_store(url)
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for n in range(count):
                text = f"{worker}:{thread}:{n}"
                store.append(shared_id, Message.user(text))
                store.append(own_ids[thread], Message.user(text))
        except BaseException as err:  # reported to the parent
            errors.append(err)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    store.close()
    if errors:
        raise errors[0]


def race_get_or_create(url: str, keys: list[str], barrier: Any, out: Any) -> None:
    """Wait for every racer, then get_or_create each key; report the ids seen."""
    store = open_store(url)
    barrier.wait()
    out.put([store.get_or_create(key).id for key in keys])
    store.close()


def say(line: str) -> None:
    """Print `line` in one write: a writer killed between the text and its newline
    (print makes two writes when Python runs unbuffered) would glue its last
    words to the next line the reader gets."""
    os.write(1, f"{line}\n".encode())


def crash_writer(url: str, session_id: str, batch: int) -> None:
    """Append batches of `batch` messages for ever, until killed: print `start N`
    before an append and `done N` once it has returned (been acknowledged)."""
    store = open_store(url)
    number = 0
    while True:
        number += 1
        messages = [Message.user(f"batch {number} part {part}") for part in range(batch)]
        say(f"start {number}")
        store.append(session_id, messages, idempotency_key=f"batch-{number}")
        say(f"done {number}")


def crash_writers(url: str, batch: int) -> None:
    """For each session id read from stdin, fork a `crash_writer` for it, which
    prints `pid P` first; once it has died (the test kills it), print `reaped P S`
    with the signal that ended it.

    The package is imported once, here, and each writer is a process of its own
    that opens its own store after the fork: killing it is as real as killing a
    fresh process, without paying an interpreter start and the imports 50 times.
    """
    for line in sys.stdin:
        session_id = line.strip()
        pid = os.fork()
        if pid == 0:
            say(f"pid {os.getpid()}")
            try:
                crash_writer(url, session_id, batch)
            finally:
                os._exit(1)  # never run the parent's cleanup in a child
        _, status = os.waitpid(pid, 0)
        say(f"reaped {pid} {os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0}")


def main(argv: list[str]) -> None:
    if argv[0] == "crash-writers":
        crash_writers(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown worker {argv[0]!r}")


def race_resolve(url: str, at: str, barrier: Any, out: Any) -> None:
    """Wait for every racer, then resolve the same direct message at the same instant."""
    from datetime import datetime

    from aisopod_session import Inbound, SessionConfig

    store = open_store(url)
    config = SessionConfig.from_dict({"timezone": "UTC"})
    barrier.wait()
    resolution = store.resolve(
        Inbound(channel="telegram", peer_id="123", at=datetime.fromisoformat(at)), config
    )
    out.put((resolution.session.id, resolution.reason))
    store.close()


def mixed_load(url: str, worker: int, seconds: float, out: Any) -> None:
    """Random appends, patches, resets, compactions, forks, rewinds, deletes,
    resolves, searches and (worker 0) maintenance on a few shared keys for
    `seconds`; report counts of what was done and what failed, every append
    acknowledged (session id, seqs, texts) and every session this worker removed."""
    import random
    import time

    rng = random.Random(worker)
    store = open_store(url)
    report = MixedReport(Counter(), [], set())
    # Sessions of the "kept" keys are never deleted or reset (everything else
    # happens to them), so most acknowledged appends can be checked at the end.
    keys = [f"agent:main:mixed-{n}" for n in range(4)] + [f"agent:main:kept-{n}" for n in range(2)]
    deadline = time.monotonic() + seconds
    try:
        _mixed_steps(store, rng, keys, worker, deadline, report)
    except BaseException as err:  # tell the parent instead of leaving it waiting
        out.put(MixedReport(Counter({f"crashed: {type(err).__name__}: {err}": 1}), [], set()))
        raise
    store.close()
    out.put(report)


class MixedReport(NamedTuple):
    """What one mixed-load worker did."""

    done: Counter[str]
    appended: list[tuple[str, tuple[int, ...], tuple[str, ...]]]
    """Each acknowledged append: session id, the seqs it returned, the texts."""
    removed: set[str]
    """The sessions this worker deleted, itself or by maintenance."""


def _mixed_steps(
    store: Any, rng: Any, keys: list[str], worker: int, deadline: float, report: MixedReport
) -> None:
    import time

    from aisopod_session import (
        ConflictError,
        Inbound,
        KeepLastTurns,
        RetentionPolicy,
        SessionNotFound,
        TokenUsage,
    )

    done = report.done
    while time.monotonic() < deadline:
        key = rng.choice(keys)
        action = rng.choice(
            ["append"] * 6
            + ["patch", "reset", "compact", "fork", "rewind", "delete", "resolve", "search"]
            + ["maintain"] * (1 if worker == 0 else 0)
        )
        if key.startswith("agent:main:kept") and action in ("delete", "reset", "resolve"):
            action = "append"
        try:
            session = store.get_or_create(key)
            if action == "append":
                n = done["append"]
                texts = (f"w{worker} says {n}", "ok")
                appended = store.append(
                    session.id,
                    [
                        Message.user(texts[0]),
                        Message.assistant(
                            texts[1], usage=TokenUsage(input=5, output=2, cost=0.001)
                        ),
                    ],
                    idempotency_key=f"w{worker}-{n}",
                )
                report.appended.append((session.id, tuple(e.seq for e in appended), texts))
            elif action == "patch":
                store.patch(session.id, metadata={f"w{worker}": rng.randint(0, 9)})
            elif action == "reset":
                store.reset(key)
            elif action == "compact":
                store.compact(session.id, KeepLastTurns(1))
            elif action == "fork":
                store.fork(session.id)
            elif action == "rewind":
                store.rewind(session.id, rng.randint(0, store.get(session.id).entry_count))
            elif action == "delete":
                store.delete(session.id)
                report.removed.add(session.id)
            elif action == "search":
                store.search(f"w{rng.randint(0, 3)} OR says", limit=10)
            elif action == "maintain":
                result = store.maintain(RetentionPolicy(mode="enforce", max_sessions=150))
                report.removed.update(r.session_id for r in result.removals if r.removed)
            else:
                store.resolve(Inbound(key=key, text="/new hi" if rng.random() < 0.2 else "hi"))
            done[action] += 1
        except (ConflictError, SessionNotFound) as err:
            done[f"expected {type(err).__name__}"] += 1


if __name__ == "__main__":
    main(sys.argv[1:])
