"""`aisopod-session serve` run as a user runs it: a process of its own, until the
test is done with it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.session.cli_process import COMMAND, ROOT, ctrl_c_reaches_it, environment


@contextmanager
def serving(db: str, *options: str) -> Iterator[str]:
    """Start `serve` on `db` with `options`; yield the line it prints; stop it after."""
    with subprocess.Popen(
        [*COMMAND, "--db", db, "serve", *options],
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stderr is not None
            line = server.stdout.readline()
            assert line.startswith("aisopod-session: serving"), line + server.stderr.read()
            yield line
        finally:
            server.terminate()
            server.wait(timeout=30)
