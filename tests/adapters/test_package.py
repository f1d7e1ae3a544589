"""The adapters package: each framework is an optional extra, imported only when asked for."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

ADAPTERS = [
    ("aisopod_session.adapters.openai_agents", "agents", "aisopod-session[openai-agents]"),
    ("aisopod_session.adapters.langchain", "langchain_core", "aisopod-session[langchain]"),
]


def test_the_package_imports_no_framework() -> None:
    """`import aisopod_session.adapters` loads neither framework."""
    code = (
        "import sys, aisopod_session.adapters\n"
        "loaded = sorted({'agents', 'langchain_core'} & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("module", "framework", "extra"), ADAPTERS)
def test_an_adapter_without_its_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    """Importing an adapter whose framework is not installed says what to install."""
    for name in list(sys.modules):
        if name == framework or name.startswith(f"{framework}."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        importlib.import_module(module)
