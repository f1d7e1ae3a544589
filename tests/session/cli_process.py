"""The `aisopod-session` command run as a user runs it: a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "openclaw" / "main"
COMMAND = [sys.executable, "-m", "aisopod_session"]


def environment(**extra: str) -> dict[str, str]:
    """The test's environment without a default store of the user's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "AISOPOD_SESSION_DB"}
    return {**env, **extra}


def cli(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command with `args`; its exit code, stdout and stderr."""
    return subprocess.run(
        [*COMMAND, *args],
        env=environment(),
        cwd=cwd or ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed run, checked to be one line on stderr with nothing on stdout."""
    assert done.returncode != 0, done.stdout
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("aisopod-session"), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip()


def ctrl_c_reaches_it() -> None:
    """`preexec_fn` for a command a test will interrupt: Ctrl-C at its default, whatever
    the test run inherited (a shell runs background jobs with SIGINT ignored, and a
    child inherits that, so Python would never raise KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
