"""Tests for `check`, the workspace's `cargo check -p NAME`.

Each test breaks a throwaway copy of the workspace in one way and shows that
check fails with a message naming the problem. Copies are made from a
template that has been checked once, so that mypy's and ruff's caches are
warm; the template's own check results (`.cache/check.json`) are not copied,
so every test starts with nothing Fresh. In the template, aisopod-session's
sources are cut down to one module that imports its sibling (its pyproject and
the lock stay as they are): what check does depends on the workspace's shape,
not on how much code a member holds, and strict mypy over all of that code took
a minute of CPU per test that rechecks it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import check

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("pyproject.toml", "uv.lock", "tools", "packages")
IGNORED = shutil.ignore_patterns(
    ".venv",
    ".cache",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "dist",
    "build",
    "*.egg-info",
)
SHARED = Path("packages/aisopod-shared")
SESSION = Path("packages/aisopod-session")
SHARED_SRC = SHARED / "src/aisopod_shared"
SESSION_SRC = SESSION / "src/aisopod_session"


class Result(NamedTuple):
    """What one run of check printed and returned."""

    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Everything printed, status lines and findings."""
        return self.stderr + self.stdout


def run_check(
    root: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Result:
    """Runs `python -m check` in a subprocess, as `uv run check` would."""
    # -P: like the console script, do not put the working folder on sys.path
    # (in a package folder, aisopod_shared/_json.py would shadow the stdlib's _json).
    command = [sys.executable, "-P", "-m", "check", *args]
    if cwd is None:
        command += ["--root", str(root)]
    process = subprocess.run(
        command,
        cwd=cwd or root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return Result(process.returncode, process.stdout, process.stderr)


def recording_tools(folder: Path) -> tuple[dict[str, str], Path]:
    """An environment in which the tools check runs (uv, and ruff and mypy as
    `python -m`) only write their name and first argument to a log, and succeed.

    Returns:
        The environment, and the log (absent until a tool runs).
    """
    log = folder / "ran.log"
    folder.mkdir(parents=True)
    uv_recorder = folder / "uv"
    uv_recorder.write_text(f'#!/bin/sh\necho "uv $1" >> "{log}"\n', encoding="utf-8")
    uv_recorder.chmod(0o755)
    for tool in ("ruff", "mypy"):
        package = folder / tool
        package.mkdir()
        (package / "__init__.py").touch()
        (package / "__main__.py").write_text(
            "import sys\n"
            f"with open({str(log)!r}, 'a', encoding='utf-8') as log:\n"
            f"    log.write('{tool} ' + sys.argv[1] + '\\n')\n",
            encoding="utf-8",
        )
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "UV": str(uv_recorder), "PYTHONPATH": path}, log


def copy_workspace(source: Path, target: Path) -> None:
    """Copies the files that make up the workspace, without venvs and caches."""
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=IGNORED)
        else:
            shutil.copy2(path, target / name)


def cut_down_session(root: Path) -> None:
    """Replaces aisopod-session's sources with one module that uses aisopod-shared."""
    package = root / SESSION_SRC
    shutil.rmtree(package)
    package.mkdir()
    (package / "py.typed").touch()
    (package / "__init__.py").write_text(
        '"""aisopod-session cut down: a member that imports its sibling."""\n\n'
        "from aisopod_shared import Message\n\n"
        '__all__ = ["Message"]\n',
        encoding="utf-8",
    )


def edit(path: Path, old: str, new: str) -> None:
    """Replaces `old` (a regular expression) in a file, failing if it is absent."""
    text = path.read_text(encoding="utf-8")
    changed, count = re.subn(old, new, text, flags=re.MULTILINE)
    assert count, f"{old!r} not found in {path}"
    path.write_text(changed, encoding="utf-8")


def undeclare_shared(root: Path) -> None:
    """Removes aisopod-shared from aisopod-session's dependencies and sources."""
    pyproject = root / SESSION / "pyproject.toml"
    edit(pyproject, r'^\s*"aisopod-shared",?\s*\n', "")
    edit(pyproject, r"^aisopod-shared\s*=\s*\{\s*workspace\s*=\s*true\s*\}\s*\n", "")


def uv() -> str:
    """The uv executable, as check finds it."""
    found = os.environ.get("UV") or shutil.which("uv")
    assert found, "uv is needed to run these tests"
    return found


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workspace (aisopod-session cut down) checked once, to warm
    mypy's and ruff's caches.

    Once for the whole run: the check is mypy over every file, so the suite's
    workers (pytest-xdist) share one template in their common temp folder, the
    first to get there making it while the others wait on its lock.
    """
    shared = tmp_path_factory.getbasetemp().parent
    root = shared / "check-template"
    with (shared / "check-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "check-template.done"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            copy_workspace(ROOT, root)
            cut_down_session(root)
            # Whether this passes is what test_clean_workspace_passes asserts.
            run_check(root, "--workspace")
            done.touch()
    return root


@pytest.fixture
def workspace(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the workspace that the test may break."""
    root = tmp_path / "workspace"
    shutil.copytree(template, root, ignore=shutil.ignore_patterns("check.json"))
    return root


def test_clean_workspace_passes_checking_dependencies_first(workspace: Path) -> None:
    result = run_check(workspace, "--workspace", "--no-cache")

    assert result.status == 0, result.output
    assert result.stdout == ""
    checking = re.findall(r"^ +Checking (\S+) v0\.1\.0 \((\S+)\)$", result.stderr, re.MULTILINE)
    assert checking == [
        ("aisopod-shared", "packages/aisopod-shared"),
        ("aisopod-session", "packages/aisopod-session"),
        ("aisopod-workspace", "."),
    ]
    assert re.search(r"^ +Finished `check` in \d+\.\d\ds$", result.stderr, re.MULTILINE)


def test_second_run_on_unchanged_tree_is_served_from_the_cache(
    workspace: Path, tmp_path: Path
) -> None:
    first = run_check(workspace, "--workspace")
    tools, ran = recording_tools(tmp_path / "tools")
    second = run_check(workspace, "--workspace", env=tools)

    assert first.status == 0, first.output
    assert second.status == 0, second.output
    assert "Checking" not in second.stderr
    assert "       Fresh aisopod-shared v0.1.0 (packages/aisopod-shared)" in second.stderr
    assert "       Fresh aisopod-session v0.1.0 (packages/aisopod-session)" in second.stderr
    assert "       Fresh aisopod-workspace v0.1.0 (.)" in second.stderr
    assert not ran.exists(), ran.read_text(encoding="utf-8")  # no tool ran

    # The recorders stand where check looks for its tools: a changed member runs them.
    with (workspace / SHARED_SRC / "__init__.py").open("a", encoding="utf-8") as file:
        file.write("\n# touched\n")
    third = run_check(workspace, "-p", "aisopod-shared", env=tools)
    assert third.status == 0, third.output
    assert set(ran.read_text(encoding="utf-8").splitlines()) == {
        "uv lock",
        "ruff check",
        "ruff format",
        "mypy -O",
        "uv run",
    }


def test_changing_shared_rechecks_session(workspace: Path) -> None:
    first = run_check(workspace, "-p", "aisopod-session")
    assert first.status == 0, first.output
    with (workspace / SHARED_SRC / "__init__.py").open("a", encoding="utf-8") as file:
        file.write("\n# touched\n")

    second = run_check(workspace, "-p", "aisopod-session")

    assert second.status == 0, second.output
    assert "Checking aisopod-shared" in second.stderr
    assert "Checking aisopod-session" in second.stderr
    assert "Fresh" not in second.stderr


def test_type_error_fails_the_types_step(workspace: Path) -> None:
    bad = workspace / SHARED_SRC / "_broken.py"
    bad.write_text('"""Broken on purpose."""\n\ncount: int = "three"\n', encoding="utf-8")

    result = run_check(workspace, "-p", "aisopod-shared")

    assert result.status == 1
    assert "error[types]" in result.stdout
    assert (
        "packages/aisopod-shared/src/aisopod_shared/_broken.py:3: "
        "Incompatible types in assignment" in result.stdout
    )
    assert "error: could not check `aisopod-shared`" in result.stderr


def test_undeclared_sibling_import_is_found_by_the_static_scan(workspace: Path) -> None:
    undeclare_shared(workspace)
    (workspace / SESSION_SRC / "_uses_shared.py").write_text(
        '"""Imports a sibling it does not declare."""\n\nfrom aisopod_shared import __version__\n',
        encoding="utf-8",
    )

    result = run_check(workspace, "-p", "aisopod-session")

    assert result.status == 1
    assert "error[metadata]" in result.stdout
    assert (
        "packages/aisopod-session/src/aisopod_session/_uses_shared.py:3: aisopod_shared "
        "imported but aisopod-shared is not a declared dependency" in result.stdout
    )


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        (
            r"^\s*\"aisopod-shared\",?\s*\n",
            "aisopod-shared is in [tool.uv.sources] but not in [project].dependencies",
        ),
        (
            r"^aisopod-shared\s*=.*\n",
            "aisopod-shared is in [project].dependencies but not in [tool.uv.sources]",
        ),
    ],
    ids=["missing-from-dependencies", "missing-from-sources"],
)
def test_sibling_declared_in_only_one_place_is_reported(
    workspace: Path, removed: str, expected: str
) -> None:
    edit(workspace / SESSION / "pyproject.toml", removed, "")
    # Relock, so that the metadata step is what fails rather than the lock step.
    subprocess.run([uv(), "lock", "--quiet"], cwd=workspace, check=True, timeout=300)

    result = run_check(workspace, "-p", "aisopod-session")

    assert result.status == 1
    assert "error[metadata]" in result.stdout
    assert expected in result.stdout


def test_undeclared_dynamic_import_fails_the_isolated_import(workspace: Path) -> None:
    # The static scan cannot see this import; only importing the package in an
    # environment that holds nothing but its declared dependencies can.
    undeclare_shared(workspace)
    package = workspace / SESSION_SRC
    shutil.rmtree(package)
    package.mkdir()
    (package / "py.typed").touch()
    (package / "__init__.py").write_text(
        '"""Imports a sibling behind the static scan\'s back."""\n\n'
        "import importlib\n\n"
        '_shared = importlib.import_module("aisopod_" + "shared")\n',
        encoding="utf-8",
    )
    subprocess.run([uv(), "lock", "--quiet"], cwd=workspace, check=True, timeout=300)

    result = run_check(workspace, "-p", "aisopod-session")

    assert result.status == 1, result.output
    assert "error[metadata]" not in result.stdout
    assert "error[import]" in result.stdout
    assert (
        "packages/aisopod-session/src/aisopod_session/__init__.py:5: "
        "ModuleNotFoundError: No module named 'aisopod_shared'" in result.stdout
    )


def test_version_mismatch_between_members_is_reported(workspace: Path) -> None:
    edit(workspace / SHARED / "pyproject.toml", r'^version = "0\.1\.0"', 'version = "0.2.0"')

    result = run_check(workspace, "-p", "aisopod-session")

    assert result.status == 1
    assert re.search(
        r'^packages/aisopod-shared/pyproject.toml:\d+: version is "0.2.0" '
        r'but the workspace root\'s is "0.1.0"',
        result.stdout,
        re.MULTILINE,
    )
    assert "error: could not check `aisopod-shared`" in result.stderr
    assert "aisopod-session v" not in result.stderr  # failed fast, before the dependent


def test_stale_lock_is_reported(workspace: Path) -> None:
    edit(workspace / SHARED / "pyproject.toml", r'"orjson>=[0-9.]+"', '"orjson>=3.9"')

    result = run_check(workspace, "-p", "aisopod-shared")

    assert result.status == 1
    assert "error[lock]" in result.stdout
    assert "uv.lock: out of date with the pyproject.toml files; run `uv lock`" in result.stdout


def test_missing_py_typed_is_reported(workspace: Path) -> None:
    (workspace / SHARED_SRC / "py.typed").unlink()

    result = run_check(workspace, "-p", "aisopod-shared")

    assert result.status == 1
    assert "packages/aisopod-shared/src/aisopod_shared/py.typed: py.typed is missing" in (
        result.stdout
    )


def test_dependency_cycle_is_reported(workspace: Path) -> None:
    pyproject = workspace / SHARED / "pyproject.toml"
    edit(pyproject, r"^dependencies = \[\n", 'dependencies = [\n    "aisopod-session",\n')
    source = "aisopod-session = { workspace = true }\n"
    if "[tool.uv.sources]" in pyproject.read_text(encoding="utf-8"):
        edit(pyproject, r"^\[tool\.uv\.sources\]\n", "[tool.uv.sources]\n" + source)
    else:
        with pyproject.open("a", encoding="utf-8") as file:
            file.write("\n[tool.uv.sources]\n" + source)

    result = run_check(workspace, "-p", "aisopod-shared")

    assert result.status == 1
    assert "dependency cycle: aisopod-" in result.stdout


def test_json_output_is_one_object_per_finding(workspace: Path) -> None:
    (workspace / SHARED_SRC / "py.typed").unlink()
    edit(workspace / SHARED / "pyproject.toml", r'^license = "MIT"', 'license = "BSD-3-Clause"')

    result = run_check(workspace, "--workspace", "--json")

    assert result.status == 1
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(findings) == 2
    for finding in findings:
        assert set(finding) == {"member", "step", "path", "line", "message", "severity"}
        assert finding["member"] == "aisopod-shared"
        assert finding["step"] == "metadata"
        assert finding["severity"] == "error"
    assert {finding["path"] for finding in findings} == {
        "packages/aisopod-shared/src/aisopod_shared/py.typed",
        "packages/aisopod-shared/pyproject.toml",
    }


def test_without_arguments_checks_the_member_of_the_current_folder(workspace: Path) -> None:
    (workspace / SHARED_SRC / "py.typed").unlink()

    result = run_check(workspace, cwd=workspace / SHARED_SRC)

    assert result.status == 1
    assert "Checking aisopod-shared" in result.stderr
    assert "aisopod-session" not in result.output


def test_unknown_package_exits_2_and_lists_members(capsys: pytest.CaptureFixture[str]) -> None:
    status = check.main(["--root", str(ROOT), "-p", "aisopod-nope"])

    captured = capsys.readouterr()
    assert status == 2
    assert "`aisopod-nope` is not a member of this workspace" in captured.err
    assert "  aisopod-session\n  aisopod-shared" in captured.err
    assert captured.out == ""


def test_help_explains_usage_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check.main(["--help"])

    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "uv run check -p aisopod-session" in text
    assert "--workspace" in text
    assert "--json" in text


def test_requirement_names_are_normalised() -> None:
    assert check.requirement_name("Aisopod_Shared>=0.1 ; python_version>'3'") == "aisopod-shared"
    assert check.requirement_name("zope.interface[x]") == "zope-interface"
    assert check.requirement_name("  ") is None
