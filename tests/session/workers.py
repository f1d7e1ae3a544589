"""Code that runs in other processes: concurrent writers and a writer to kill.

Run as `python -m tests.session.workers crash-writer URL` for the crash test;
the functions are targets for `multiprocessing` (spawn) in the concurrency tests.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

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


def crash_writer(url: str, session_id: str, batch: int) -> None:
    """Append batches of `batch` messages for ever, printing each batch number
    once its append has returned (been acknowledged), until killed."""
    store = open_store(url)
    number = 0
    while True:
        number += 1
        messages = [Message.user(f"batch {number} part {part}") for part in range(batch)]
        store.append(session_id, messages, idempotency_key=f"batch-{number}")
        print(number, flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "crash-writer":
        crash_writer(argv[1], argv[2], int(argv[3]))
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


if __name__ == "__main__":
    main(sys.argv[1:])
