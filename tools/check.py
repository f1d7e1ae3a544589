"""Check workspace members the way `cargo check -p NAME` checks crates.

`uv run check -p NAME` checks NAME's workspace dependencies first, then NAME;
`uv run check --workspace` checks every member and then the workspace root.
Each member goes through the steps in `STEPS`, stopping at the first one
that fails. Members whose inputs are unchanged since their last successful
check are reported `Fresh` and skipped (see `member_key`).

The module only uses the standard library: the workspace root is a package
without dependencies, and `check` must run before anything else works.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TextIO

STEPS: Final = ("metadata", "lock", "lint", "types", "import")
"""Steps run for each member, in order; `lint` also reports `format` findings."""

ROOT_STEPS: Final = ("lock", "lint", "types")
"""Steps run for the workspace root itself (with `--workspace`)."""

ROOT_DIRS: Final = ("tools", "tests", "benchmarks")
"""Folders of the workspace root that are linted and type-checked."""

SHARED_FIELDS: Final = ("version", "requires-python", "license", "authors")
"""[project] fields every member must copy verbatim from the workspace root."""

BUILD_BACKEND: Final = "hatchling.build"
CACHE_FORMAT: Final = 1

_HEADINGS: Final = {
    "metadata": "package metadata is inconsistent",
    "lock": "uv.lock is not up to date",
    "lint": "ruff found problems",
    "format": "files are not formatted (run `uv run ruff format`)",
    "types": "mypy --strict found type errors",
    "import": "the package does not import with only its declared dependencies",
}

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TRACEBACK_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')
_MISSING_MODULE = re.compile(r"No module named '(?P<module>[^'.]+)")
_SKIPPED_DIRS: Final = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})


class UsageError(Exception):
    """The command line names something that does not exist (exit status 2)."""


class WorkspaceError(Exception):
    """The workspace cannot be read at all, e.g. a pyproject.toml is not valid TOML."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found by a step, located at `path:line` relative to the root."""

    member: str
    step: str
    path: str
    line: int | None
    message: str
    severity: str = "error"

    def render(self) -> str:
        """Returns the `path:line: message` form that editors and terminals link."""
        location = self.path if self.line is None else f"{self.path}:{self.line}"
        note = "" if self.severity == "error" else f"{self.severity}: "
        return f"{location}: {note}{self.message}"

    def to_json(self) -> dict[str, object]:
        """Returns the finding as the object `--json` prints."""
        return {
            "member": self.member,
            "step": self.step,
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class Member:
    """A workspace member, or the workspace root itself when `is_root` is set."""

    name: str
    path: Path
    rel: str
    manifest: Mapping[str, Any]
    text: str
    requirements: frozenset[str]
    sources: Mapping[str, object]
    siblings: frozenset[str]
    is_root: bool = False

    @property
    def project(self) -> Mapping[str, Any]:
        """The [project] table."""
        table: Mapping[str, Any] = self.manifest.get("project", {})
        return table

    @property
    def version(self) -> str:
        """The declared version, or `?` when missing (reported by the metadata step)."""
        return str(self.project.get("version", "?"))

    @property
    def import_name(self) -> str:
        """The name the member's package is imported as."""
        return self.name.replace("-", "_")

    @property
    def src(self) -> Path:
        """The member's src/ folder."""
        return self.path / "src"

    @property
    def pyproject(self) -> str:
        """The member's pyproject.toml, relative to the workspace root."""
        return "pyproject.toml" if self.rel == "." else f"{self.rel}/pyproject.toml"

    def workspace_sources(self) -> frozenset[str]:
        """Names whose [tool.uv.sources] entry is `{ workspace = true }`."""
        return frozenset(
            name
            for name, source in self.sources.items()
            if isinstance(source, dict) and source.get("workspace") is True
        )


@dataclass(frozen=True, slots=True)
class Workspace:
    """The workspace root and its members, keyed by normalised name."""

    root: Path
    top: Member
    members: Mapping[str, Member]

    def relative(self, path: str | Path) -> str:
        """Returns `path` relative to the root in POSIX form, or as given if outside it."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            return candidate.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def src_dirs(self) -> list[Path]:
        """The src/ folders of all members: the checked tree's own sources."""
        return [member.src for member in self.members.values()]


# --- reading the workspace -------------------------------------------------


def normalise(name: str) -> str:
    """Normalises a distribution name as PEP 503 does (`Foo_bar` -> `foo-bar`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    """Returns the normalised distribution name of a PEP 508 requirement string."""
    match = _REQUIREMENT_NAME.match(requirement)
    return normalise(match.group(1)) if match else None


def find_root(start: Path) -> Path:
    """Walks up from `start` to the pyproject.toml that declares [tool.uv.workspace].

    Raises:
        UsageError: No such pyproject.toml above `start`.
    """
    for folder in (start, *start.parents):
        if _declares_workspace(folder / "pyproject.toml"):
            return folder
    raise UsageError(f"no pyproject.toml with [tool.uv.workspace] in {start} or its parents")


def _declares_workspace(pyproject: Path) -> bool:
    if not pyproject.is_file():
        return False
    return "workspace" in _load_toml(pyproject).get("tool", {}).get("uv", {})


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise WorkspaceError(f"could not read {path}: {error}") from error


def _requirements(project: Mapping[str, Any]) -> frozenset[str]:
    # Optional extras count as declared: importing a sibling behind an extra is legitimate.
    strings: list[object] = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        strings.extend(extra)
    names = (requirement_name(item) for item in strings if isinstance(item, str))
    return frozenset(name for name in names if name)


def _member_dirs(root: Path, workspace: Mapping[str, Any]) -> list[Path]:
    excluded = {path for pattern in workspace.get("exclude", []) for path in root.glob(pattern)}
    found = {
        path
        for pattern in workspace.get("members", [])
        for path in root.glob(pattern)
        if (path / "pyproject.toml").is_file() and path not in excluded
    }
    return sorted(found)


def _read_member(root: Path, path: Path, names: frozenset[str], *, is_root: bool) -> Member:
    pyproject = path / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    manifest = _load_toml(pyproject)
    project = manifest.get("project", {})
    sources = {
        normalise(key): value
        for key, value in manifest.get("tool", {}).get("uv", {}).get("sources", {}).items()
    }
    requirements = _requirements(project)
    name = normalise(project.get("name", path.name))
    # The root depends on every member (its tests import them), whatever it declares.
    siblings = names if is_root else (requirements | frozenset(sources)) & names
    return Member(
        name=name,
        path=path,
        rel="." if is_root else path.relative_to(root).as_posix(),
        manifest=manifest,
        text=text,
        requirements=requirements,
        sources=sources,
        siblings=frozenset(siblings),
        is_root=is_root,
    )


def load_workspace(root: Path) -> Workspace:
    """Reads the workspace rooted at `root` and its members.

    Raises:
        WorkspaceError: A pyproject.toml cannot be read or parsed.
    """
    root = root.resolve()
    manifest = _load_toml(root / "pyproject.toml")
    declaration = manifest.get("tool", {}).get("uv", {}).get("workspace")
    if declaration is None:
        raise WorkspaceError(f"{root / 'pyproject.toml'} has no [tool.uv.workspace] table")
    dirs = _member_dirs(root, declaration)
    names = frozenset(
        normalise(_load_toml(path / "pyproject.toml").get("project", {}).get("name", path.name))
        for path in dirs
    )
    members = [_read_member(root, path, names, is_root=False) for path in dirs]
    top = _read_member(root, root, names, is_root=True)
    return Workspace(root=root, top=top, members={member.name: member for member in members})


# --- ordering --------------------------------------------------------------


def check_order(workspace: Workspace, requested: Iterable[str]) -> list[Member]:
    """Returns `requested` and their workspace dependencies, each dependency first.

    A cycle does not stop the walk (the back edge is skipped): the metadata
    step of a member on the cycle reports it.
    """
    order: list[Member] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in visiting:
            return
        visiting.add(name)
        for dependency in sorted(workspace.members[name].siblings):
            visit(dependency)
        visiting.discard(name)
        done.add(name)
        order.append(workspace.members[name])

    for name in requested:
        visit(name)
    return order


def find_cycle(workspace: Workspace, start: str) -> list[str] | None:
    """Returns a dependency path from `start` back to itself, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for dependency in sorted(workspace.members[name].siblings, reverse=True):
            if dependency == start:
                return [*path, start]
            if dependency not in seen:
                seen.add(dependency)
                stack.append((dependency, [*path, dependency]))
    return None


# --- step 1: metadata --------------------------------------------------------


def _key_line(text: str, table: str, key: str | None = None) -> int | None:
    """Returns the line of `key` in `[table]` (or of the header if `key` is absent)."""
    current: str | None = None
    header: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _TABLE_HEADER.match(line)
        if match:
            current = match.group(1).replace(" ", "")
            if current == table:
                header = number
            continue
        if current == table and key and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return header


def _text_line(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _metadata_finding(member: Member, line: int | None, message: str) -> Finding:
    return Finding(member.name, "metadata", member.pyproject, line, message)


def check_identity(member: Member) -> list[Finding]:
    """Checks the member's folder, name and build backend."""
    findings: list[Finding] = []
    name = member.project.get("name")
    if name != member.path.name:
        findings.append(
            _metadata_finding(
                member,
                _key_line(member.text, "project", "name"),
                f"name {json.dumps(name)} does not match its folder "
                f"{member.rel!r}: members live in packages/<name>",
            )
        )
    backend = member.manifest.get("build-system", {}).get("build-backend")
    if backend != BUILD_BACKEND:
        findings.append(
            _metadata_finding(
                member,
                _key_line(member.text, "build-system", "build-backend"),
                f"build backend is {json.dumps(backend)}, expected {json.dumps(BUILD_BACKEND)}",
            )
        )
    return findings


def check_py_typed(member: Member) -> list[Finding]:
    """Checks that the import package exists and carries a PEP 561 `py.typed` marker."""
    package = member.src / member.import_name
    rel = f"{member.rel}/src/{member.import_name}"
    if not package.is_dir():
        return [Finding(member.name, "metadata", rel, None, "package folder is missing")]
    if not (package / "py.typed").is_file():
        message = (
            "py.typed is missing: without it type checkers ignore the package's "
            "annotations once installed (PEP 561)"
        )
        return [Finding(member.name, "metadata", f"{rel}/py.typed", None, message)]
    return []


def check_shared_fields(member: Member, top: Member) -> list[Finding]:
    """Checks the [project] fields that every member copies from the workspace root."""
    findings: list[Finding] = []
    for field in SHARED_FIELDS:
        expected = top.project.get(field)
        actual = member.project.get(field)
        if actual == expected:
            continue
        shown = "missing" if actual is None else json.dumps(actual)
        findings.append(
            _metadata_finding(
                member,
                _key_line(member.text, "project", field),
                f"{field} is {shown} but the workspace root's is {json.dumps(expected)}; "
                "members share one value",
            )
        )
    return findings


def check_sibling_declarations(member: Member, workspace: Workspace) -> list[Finding]:
    """Checks that each sibling dependency is declared as a dependency and as a source.

    The root's [tool.uv.sources] would hide a missing member entry inside the
    workspace; declaring both keeps each member's pyproject.toml self-contained.
    """
    findings: list[Finding] = []
    sources = member.workspace_sources()
    for name in sorted(member.requirements & frozenset(workspace.members)):
        if name in sources:
            continue
        if name in member.sources:
            message = f"[tool.uv.sources] entry for {name} must be `{{ workspace = true }}`"
            line = _key_line(member.text, "tool.uv.sources", name)
        else:
            message = (
                f"{name} is in [project].dependencies but not in [tool.uv.sources]; "
                f"add `{name} = {{ workspace = true }}`"
            )
            line = _text_line(member.text, f'"{name}') or _key_line(member.text, "project")
        findings.append(_metadata_finding(member, line, message))
    for name in sorted(sources - member.requirements):
        line = _key_line(member.text, "tool.uv.sources", name)
        if name in workspace.members:
            message = f"{name} is in [tool.uv.sources] but not in [project].dependencies"
        else:
            message = f"[tool.uv.sources] names {name} with workspace = true, but it is no member"
        findings.append(_metadata_finding(member, line, message))
    return findings


def check_cycles(member: Member, workspace: Workspace) -> list[Finding]:
    """Checks that the member is on no dependency cycle among members."""
    cycle = find_cycle(workspace, member.name)
    if cycle is None:
        return []
    line = _key_line(member.text, "project", "dependencies")
    return [_metadata_finding(member, line, "dependency cycle: " + " -> ".join(cycle))]


def python_files(folder: Path) -> list[Path]:
    """Returns the .py files under `folder`, skipping caches, in a stable order."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*.py")
        if not _SKIPPED_DIRS.intersection(path.relative_to(folder).parts)
    )


def _imported_modules(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module


def scan_imports(member: Member, workspace: Workspace) -> list[Finding]:
    """Finds `import X` / `from X import` of a sibling the member does not declare.

    The shared development venv holds every member, so such an import works
    there and fails for users who install the member alone.
    """
    siblings = {
        other.import_name: other.name
        for other in workspace.members.values()
        if other.name != member.name
    }
    findings: list[Finding] = []
    for path in python_files(member.src):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue  # the lint step reports syntax errors with better messages
        for node in ast.walk(tree):
            for module in _imported_modules(node):
                top = module.partition(".")[0]
                sibling = siblings.get(top)
                if sibling is None or sibling in member.requirements:
                    continue
                message = f"{top} imported but {sibling} is not a declared dependency"
                line = getattr(node, "lineno", None)
                findings.append(
                    Finding(member.name, "metadata", workspace.relative(path), line, message)
                )
    return findings


def check_metadata(member: Member, workspace: Workspace) -> list[Finding]:
    """Runs every metadata check of step 1."""
    return [
        *check_identity(member),
        *check_py_typed(member),
        *check_shared_fields(member, workspace.top),
        *check_sibling_declarations(member, workspace),
        *check_cycles(member, workspace),
        *scan_imports(member, workspace),
    ]


# --- steps 2 to 5: external tools -------------------------------------------


@dataclass(frozen=True, slots=True)
class Tool:
    """What a finished external command returned."""

    returncode: int
    stdout: str
    stderr: str

    def output(self) -> str:
        """Returns stderr and stdout together, stripped, for messages."""
        return "\n".join(part.strip() for part in (self.stderr, self.stdout) if part.strip())


def run_tool(command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> Tool:
    """Runs `command` in `cwd`, capturing its output as text."""
    try:
        process = subprocess.run(
            command,
            cwd=cwd,
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except OSError as error:
        return Tool(127, "", f"could not run {command[0]}: {error}")
    return Tool(process.returncode, process.stdout, process.stderr)


def tool_failure(member: Member, step: str, path: str, what: str, tool: Tool) -> Finding:
    """Reports a tool that failed without findings we could parse (e.g. it crashed)."""
    detail = tool.output() or "no output"
    return Finding(member.name, step, path, None, f"{what} failed ({tool.returncode}): {detail}")


def uv_path() -> str | None:
    """Returns the uv executable: `$UV` (set by `uv run`) or the one on PATH."""
    return os.environ.get("UV") or shutil.which("uv")


def parse_ruff(member: Member, workspace: Workspace, step: str, tool: Tool) -> list[Finding]:
    """Parses `ruff check` / `ruff format --check` JSON output into findings."""
    try:
        items = json.loads(tool.stdout or "[]")
    except json.JSONDecodeError:
        items = None
    # Exit status 1 means "found problems"; anything else, or no problems listed, is a crash.
    expected = 1 if isinstance(items, list) and items else 0
    if not isinstance(items, list) or tool.returncode != expected:
        return [tool_failure(member, step, member.rel, f"ruff ({step})", tool)]
    findings = []
    for item in items:
        code = item.get("code")
        message = str(item.get("message", ""))
        if step == "lint" and code:
            message = f"{code} {message}"
        line = (item.get("location") or {}).get("row")
        path = workspace.relative(str(item.get("filename", member.rel)))
        findings.append(Finding(member.name, step, path, line, message))
    return findings


def parse_mypy(member: Member, workspace: Workspace, tool: Tool) -> list[Finding]:
    """Parses `mypy -O json` output (one object per line) into findings."""
    findings = []
    for raw in tool.stdout.splitlines():
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if not isinstance(item, dict):
            continue
        code = item.get("code")
        message = str(item.get("message", "")) + (f"  [{code}]" if code else "")
        line = item.get("line")
        findings.append(
            Finding(
                member.name,
                "types",
                workspace.relative(str(item.get("file", member.rel))),
                line if isinstance(line, int) and line > 0 else None,
                message,
                "error" if item.get("severity") == "error" else "note",
            )
        )
    if tool.returncode != 0 and not any(item.severity == "error" for item in findings):
        findings.append(tool_failure(member, "types", member.rel, "mypy", tool))
    return findings


def parse_import_failure(member: Member, workspace: Workspace, tool: Tool) -> Finding:
    """Turns the traceback of a failed isolated import into one located finding."""
    lines = [line for line in tool.stderr.splitlines() if line.strip()]
    path, line = f"{member.rel}/src/{member.import_name}", None
    for text in lines:
        frame = _TRACEBACK_FRAME.match(text)
        if frame and Path(frame["path"]).resolve().is_relative_to(member.path):
            path, line = workspace.relative(frame["path"]), int(frame["line"])
    error = lines[-1].strip() if lines else f"exit status {tool.returncode}"
    message = f"{error} (importing {member.import_name} with only its declared dependencies)"
    missing = _MISSING_MODULE.search(error)
    by_import = {other.import_name: other.name for other in workspace.members.values()}
    if missing and missing["module"] in by_import:
        sibling = by_import[missing["module"]]
        message += (
            f"; declare {sibling} in [project].dependencies and "
            f"`{sibling} = {{ workspace = true }}` in [tool.uv.sources]"
        )
    return Finding(member.name, "import", path, line, message)


def lock_message(tool: Tool) -> str:
    """Describes why `uv lock --check` failed, without uv's progress lines."""
    lines = tool.output().splitlines()
    errors = [index for index, line in enumerate(lines) if line.startswith("error:")]
    detail = " ".join(line.strip() for line in lines[errors[0] if errors else 0 :] if line.strip())
    if "needs to be updated" in detail:
        return "out of date with the pyproject.toml files; run `uv lock` and commit uv.lock"
    return f"`uv lock --check` failed: {detail.removeprefix('error: ')}"


# --- running the steps -------------------------------------------------------


class Checker:
    """Runs the steps for members of one workspace, remembering per-run results."""

    def __init__(self, workspace: Workspace) -> None:
        """Prepares to check `workspace`; nothing runs until `check` is called."""
        self.workspace = workspace
        self.uv = uv_path()
        self._lock: list[Finding] | None = None
        self._cache_dir = workspace.root / ".cache"

    def check(self, member: Member, report: Reporter) -> list[Finding]:
        """Runs the member's steps, reporting as it goes; stops at the first failure.

        Returns:
            The findings of the failing step, or an empty list if all passed.
        """
        for step in ROOT_STEPS if member.is_root else STEPS:
            findings = self.run_step(step, member)
            report.findings(findings)
            if any(finding.severity == "error" for finding in findings):
                return findings
        return []

    def run_step(self, step: str, member: Member) -> list[Finding]:
        """Runs one named step (see `STEPS`) for one member."""
        steps = {
            "metadata": lambda: check_metadata(member, self.workspace),
            # The lock is checked once per run but reported against the member at hand.
            "lock": lambda: [replace(finding, member=member.name) for finding in self.lock()],
            "lint": lambda: self.lint(member),
            "types": lambda: self.types(member),
            "import": lambda: self.isolated_import(member),
        }
        return steps[step]()

    def lock(self) -> list[Finding]:
        """Runs `uv lock --check` once per run: one lock serves all members."""
        if self._lock is None:
            self._lock = self._check_lock()
        return self._lock

    def _check_lock(self) -> list[Finding]:
        if self.uv is None:
            return [Finding("", "lock", "uv.lock", None, "uv not found: set UV or put uv on PATH")]
        tool = run_tool([self.uv, "lock", "--check"], self.workspace.root)
        if tool.returncode == 0:
            return []
        return [Finding("", "lock", "uv.lock", None, lock_message(tool))]

    def targets(self, member: Member) -> list[Path]:
        """The folders that the lint and type steps look at for `member`."""
        if member.is_root:
            return [self.workspace.root / name for name in ROOT_DIRS]
        return [member.src]

    def lint(self, member: Member) -> list[Finding]:
        """Runs `ruff check` and `ruff format --check` on the member's folders."""
        targets = [str(path) for path in self.targets(member) if python_files(path)]
        if not targets:
            return []
        common = ["--output-format=json", "--cache-dir", str(self._cache_dir / "ruff")]
        ruff = [sys.executable, "-m", "ruff"]
        check = run_tool([*ruff, "check", *common, *targets], self.workspace.root)
        fmt = run_tool([*ruff, "format", "--check", *common, *targets], self.workspace.root)
        return [
            *parse_ruff(member, self.workspace, "lint", check),
            *parse_ruff(member, self.workspace, "format", fmt),
        ]

    def types(self, member: Member) -> list[Finding]:
        """Runs mypy --strict (the root's [tool.mypy]) on the member's folders."""
        targets = [str(path) for path in self.targets(member) if python_files(path)]
        if not targets:
            return []
        # The checked tree's sources must win over the editable installs of
        # whichever checkout the venv was made from (tests check copies).
        search = [str(path) for path in self.workspace.src_dirs()]
        if member.is_root:
            search.append(str(self.workspace.root / "tools"))
        env = {**os.environ, "MYPYPATH": os.pathsep.join(search)}
        command = [
            *(sys.executable, "-m", "mypy", "-O", "json"),
            *("--config-file", str(self.workspace.root / "pyproject.toml")),
            *("--cache-dir", str(self._cache_dir / "mypy")),
            # Test folders without __init__.py may repeat module names (conftest).
            "--explicit-package-bases",
            *targets,
        ]
        tool = run_tool(command, self.workspace.root, env)
        return parse_mypy(member, self.workspace, tool)

    def isolated_import(self, member: Member) -> list[Finding]:
        """Imports the member in a fresh environment holding only what it declares.

        The shared venv holds every member, which hides an import of a sibling
        that the member never declared; a static scan cannot see dynamic imports.
        """
        if self.uv is None:
            return [Finding(member.name, "import", member.rel, None, "uv not found")]
        command = [
            *(self.uv, "run", "--locked", "--isolated", "--package", member.name),
            *("python", "-I", "-c", f"import {member.import_name}"),
        ]
        tool = run_tool(command, self.workspace.root)
        if tool.returncode == 0:
            return []
        return [parse_import_failure(member, self.workspace, tool)]


# --- cache -----------------------------------------------------------------


def _hash_files(root: Path, paths: Iterable[Path]) -> bytes:
    # Names are hashed with contents, so that renaming a file changes the key.
    digest = hashlib.sha256()
    for path in sorted(paths):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.digest()


def _tree_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix != ".pyc"
        and not _SKIPPED_DIRS.intersection(path.relative_to(folder).parts)
    ]


@functools.cache
def _fingerprint() -> bytes:
    # A new version of this script, or another interpreter, may judge differently.
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{sys.executable}\0{sys.version}\0".encode())
    digest.update(Path(__file__).read_bytes())
    return digest.digest()


def member_key(member: Member, workspace: Workspace, keys: Mapping[str, str]) -> str:
    """Returns the hash of everything a member's check result depends on.

    That is the member's files (src/, pyproject.toml, README), the root
    pyproject.toml (tool configuration) and uv.lock (tool versions), this
    script, and the keys of its workspace dependencies, so that a change to
    a dependency re-checks its dependents.
    """
    digest = hashlib.sha256(_fingerprint())
    root = workspace.root
    digest.update(_hash_files(root, [root / "pyproject.toml", root / "uv.lock"]))
    if member.is_root:
        files = [path for name in ROOT_DIRS for path in _tree_files(root / name)]
    else:
        readmes = member.path.glob("README*")
        files = [member.path / "pyproject.toml", *readmes, *_tree_files(member.src)]
    digest.update(_hash_files(root, files))
    for name in sorted(member.siblings):
        digest.update(f"{name}\0{keys.get(name, '')}\0".encode())
    return digest.hexdigest()


class Cache:
    """Keys of members whose last check succeeded, in `<root>/.cache/check.json`."""

    def __init__(self, root: Path, *, read: bool) -> None:
        """Loads the cache file unless `read` is false (`--no-cache`)."""
        self.path = root / ".cache" / "check.json"
        self.entries: dict[str, str] = self._load() if read else {}

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a missing or damaged cache only costs a full check
        entries = data.get("members") if isinstance(data, dict) else None
        if data.get("format") != CACHE_FORMAT or not isinstance(entries, dict):
            return {}
        return {str(name): str(key) for name, key in entries.items()}

    def is_fresh(self, name: str, key: str) -> bool:
        """Returns whether `name` last passed with exactly these inputs."""
        return self.entries.get(name) == key

    def record(self, name: str, key: str | None) -> None:
        """Stores a success (`key`) or forgets the member (None), then saves."""
        if key is None:
            self.entries.pop(name, None)
        else:
            self.entries[name] = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that an interrupted run never leaves half a file.
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        payload = {"format": CACHE_FORMAT, "members": dict(sorted(self.entries.items()))}
        temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.path)


# --- output ----------------------------------------------------------------


class Reporter:
    """Prints cargo-style status lines to stderr and findings to stdout."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool) -> None:
        """Prints findings to `out` (as JSON lines if `as_json`) and status to `err`."""
        self.out = out
        self.err = err
        self.as_json = as_json
        self.count = 0

    @staticmethod
    def _colour(stream: TextIO, code: str, text: str) -> str:
        if os.environ.get("NO_COLOR") or not stream.isatty():
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def status(self, verb: str, text: str) -> None:
        """Prints `verb` right-aligned in twelve columns, as cargo does."""
        shown = self._colour(self.err, "1;32", f"{verb:>12}")
        print(f"{shown} {text}", file=self.err, flush=True)

    def member(self, verb: str, member: Member) -> None:
        """Prints `Checking NAME vX (path)` or `Fresh ...` for a member."""
        self.status(verb, f"{member.name} v{member.version} ({member.rel})")

    def findings(self, findings: Sequence[Finding]) -> None:
        """Prints findings grouped under an `error[step]:` heading per step."""
        self.count += sum(1 for finding in findings if finding.severity == "error")
        if self.as_json:
            for finding in findings:
                print(json.dumps(finding.to_json()), file=self.out, flush=True)
            return
        for step in dict.fromkeys(finding.step for finding in findings):
            group = [finding for finding in findings if finding.step == step]
            label = self._colour(self.out, "1;31", f"error[{step}]")
            print(f"{label}: {_HEADINGS.get(step, step)}", file=self.out)
            for finding in group:
                print(finding.render(), file=self.out)
            print(file=self.out, flush=True)

    def error(self, text: str) -> None:
        """Prints an `error: ...` line to stderr."""
        print(f"{self._colour(self.err, '1;31', 'error')}: {text}", file=self.err, flush=True)


# --- command line ----------------------------------------------------------

_DESCRIPTION = """\
Check workspace members the way `cargo check -p NAME` checks crates.

Each member is checked after its workspace dependencies, and the run stops at
the first step that fails:

  metadata  the folder is packages/<name>; the build backend is hatchling;
            src/<import_name>/py.typed exists; version, requires-python,
            license and authors equal the workspace root's; each sibling
            dependency is in [project].dependencies and, with workspace = true,
            in [tool.uv.sources]; no dependency cycles; src/ imports no
            sibling that is not declared
  lock      uv.lock is current (`uv lock --check`, once per run)
  lint      `ruff check` and `ruff format --check` on src/
  types     mypy --strict on src/, with the root's [tool.mypy]
  import    the member imports in an isolated environment that holds only
            what it declares (`uv run --isolated --package NAME`)

--workspace also checks the workspace root: ruff and mypy on tools/, tests/
and benchmarks/. A member whose files, dependencies, pyproject.toml and
uv.lock are unchanged since it last passed is reported Fresh and skipped.
Without -p or --workspace, check runs on the member containing the current
directory, or on the whole workspace.
"""

_EPILOG = """\
examples:
  uv run check -p aisopod-session     check aisopod-shared, then aisopod-session
  uv run check --workspace            check every member, then the root
  uv run check --workspace --json     one JSON object per finding on stdout

exit status: 0 if every check passed, 1 if one failed, 2 on a usage error
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the command line (`sys.argv[1:]` when `argv` is None)."""
    parser = argparse.ArgumentParser(
        prog="check",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "-p",
        "--package",
        action="append",
        default=[],
        metavar="NAME",
        help="check this member and its workspace dependencies (repeatable)",
    )
    selection.add_argument(
        "--workspace", action="store_true", help="check all members, then the workspace root"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per finding (member, step, path, line, message, "
        "severity) on stdout, and nothing else",
    )
    parser.add_argument(
        "--root",
        type=Path,
        metavar="PATH",
        help="workspace root (default: the nearest parent with [tool.uv.workspace])",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="check every selected member even if unchanged (results are still recorded)",
    )
    return parser.parse_args(argv)


def select(workspace: Workspace, args: argparse.Namespace) -> tuple[list[Member], bool]:
    """Returns the members to check, dependencies first, and whether to check the root.

    Raises:
        UsageError: A `-p` name is not a workspace member.
    """
    requested = [normalise(name) for name in args.package]
    unknown = [name for name in requested if name not in workspace.members]
    if unknown:
        listing = "\n".join(f"  {name}" for name in workspace.members)
        raise UsageError(
            f"package `{unknown[0]}` is not a member of this workspace\n\n"
            f"workspace members:\n{listing}"
        )
    if not requested and not args.workspace:
        # Like cargo: inside a member's folder, check that member.
        here = Path.cwd().resolve()
        requested = [m.name for m in workspace.members.values() if here.is_relative_to(m.path)]
    if not requested:
        return check_order(workspace, workspace.members), True
    return check_order(workspace, requested), False


def run(workspace: Workspace, members: Sequence[Member], report: Reporter, cache: Cache) -> int:
    """Checks `members` in order, reusing cached successes; returns the exit status."""
    checker = Checker(workspace)
    keys: dict[str, str] = {}
    for member in members:
        key = member_key(member, workspace, keys)
        keys[member.name] = key
        if cache.is_fresh(member.name, key):
            report.member("Fresh", member)
            continue
        report.member("Checking", member)
        if checker.check(member, report):
            cache.record(member.name, None)
            errors = f"{report.count} error{'s' if report.count != 1 else ''}"
            report.error(f"could not check `{member.name}` ({errors})")
            return 1
        cache.record(member.name, key)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `check` and returns its exit status (the console script's entry point)."""
    started = time.perf_counter()
    args = parse_args(argv)
    report = Reporter(sys.stdout, sys.stderr, as_json=args.json)
    try:
        root = args.root.resolve() if args.root else find_root(Path.cwd().resolve())
        workspace = load_workspace(root)
        members, with_root = select(workspace, args)
    except UsageError as error:
        report.error(str(error))
        return 2
    except WorkspaceError as error:
        report.error(str(error))
        return 1
    order = [*members, workspace.top] if with_root else members
    status = run(workspace, order, report, Cache(workspace.root, read=not args.no_cache))
    if status == 0:
        report.status("Finished", f"`check` in {time.perf_counter() - started:.2f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
