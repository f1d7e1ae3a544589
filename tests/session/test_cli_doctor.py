"""`doctor` answers about any store: a damaged one (still JSON with `--json`), a
read-only one (explained, not a failure), one in a folder others can list."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from aisopod_session import open_store
from aisopod_session.cli import main
from tests.session.cli_process import EXAMPLE
from tests.session.postgres_schema import temporary_schema
from tests.session.test_read_only import read_only_folder_fixture  # noqa: F401 - a fixture

PAGE = 4096


def doctor(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, Any, str]:
    """Exit code, the report (parsed with `--json`, else the text) and stderr."""
    code = main(["--db", url, "doctor", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if "--json" in args else captured.out, captured.err


def filled(path: Path) -> str:
    """A store at `path` with the example agent imported, closed; its URL."""
    url = f"sqlite://{path}"
    assert main(["--db", url, "import", str(EXAMPLE), "--json"]) == 0
    return url


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 20)


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: 5 * PAGE])


def scribbled(path: Path) -> None:
    """Pages in the middle overwritten: the header still reads, the tables do not."""
    data = bytearray(path.read_bytes())
    data[20 * PAGE : 26 * PAGE] = b"\xff" * (6 * PAGE)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "opened", "reason"),
    [
        (garbage, False, "not a SQLite database"),
        (cut_short, False, "damaged"),
        (scribbled, True, "damaged"),
    ],
)
def test_a_damaged_store_is_a_report_in_json_too(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    opened: bool,
    reason: str,
) -> None:
    path = tmp_path / "sessions.db"
    url = filled(path)
    capsys.readouterr()
    damage(path)
    before = path.read_bytes()
    code, report, err = doctor(capsys, url, "--json")
    assert (code, err) == (1, "")
    assert (report["url"], report["opened"]) == (url, opened)
    assert any(reason in problem for problem in report["problems"]), report
    assert path.read_bytes() == before
    code, text, err = doctor(capsys, url)
    assert (code, err) == (1, "")
    assert text.splitlines()[-1].strip() in report["problems"]


def test_a_folder_others_can_list_is_a_warning_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the default folder, in a 0755 folder: the private files are what count."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    url = filled(folder / "sessions.db")
    capsys.readouterr()
    code, report, _ = doctor(capsys, url, "--json")
    assert code == 0
    assert report["problems"] == []
    assert report["warnings"] == [
        f"{folder} can be listed by others (0o755); the files are private"
    ]
    code, text, _ = doctor(capsys, url)
    assert code == 0
    assert text.splitlines()[-2:] == [f"warning: {report['warnings'][0]}", "ok"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_opened_read_only_is_explained(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    if backend == "sqlite":
        url = filled(tmp_path / "sessions.db")
        _check_read_only(capsys, f"{url}?read_only=1", "it was opened with ?read_only=1")
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        assert main(["--db", url, "import", str(EXAMPLE), "--json"]) == 0
        _check_read_only(capsys, f"{url}&read_only=1", "it was opened with ?read_only=1")


def test_a_store_on_a_read_only_disk_is_explained(
    read_only_folder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder: Path = read_only_folder.folder
    path = folder / "sessions.db"
    open_store(path).close()
    read_only_folder(folder)
    reason = (
        f"{folder} is on a read-only filesystem"
        if _mounted_read_only(folder)
        else f"{path} is not writable by this user"
    )
    _check_read_only(capsys, f"sqlite://{path}", reason)


def _mounted_read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def _check_read_only(capsys: pytest.CaptureFixture[str], url: str, reason: str) -> None:
    capsys.readouterr()
    code, report, _ = doctor(capsys, url, "--json")
    assert code == 0, report
    assert report["read_only"] is True
    assert report["problems"] == []
    assert f"read-only: {reason}; reading works, every write" in report["warnings"][-1]


def test_a_server_that_refuses_is_a_report_without_the_password(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = urlsplit(postgres_dsn)
    url = urlunsplit(parts._replace(netloc=f"nobody:s3cret@{parts.hostname}:{parts.port or 5432}"))
    code, report, err = doctor(capsys, url, "--json")
    assert (code, err, report["opened"]) == (1, "", False)
    assert "s3cret" not in json.dumps(report)
    assert report["url"].startswith("postgresql://nobody:***@")
    assert "nobody" in report["problems"][0]
