"""`--soak` runs every property-based test of the reliability suite on ten times
as many examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import SOAK_FACTOR

ROOT = Path(__file__).resolve().parents[2]

# A plugin for the runs below: it writes down the settings each collected
# Hypothesis test would run with (Hypothesis keeps them on the test function).
REPORTER = """
import json, os

def pytest_collection_finish(session):
    examples = {}
    for item in session.items:
        chosen = getattr(getattr(item, "obj", None), "_hypothesis_internal_use_settings", None)
        if chosen is not None:
            examples[item.nodeid] = chosen.max_examples
    with open(os.environ["EXAMPLES_REPORT"], "w", encoding="utf-8") as report:
        json.dump(examples, report)
"""


def test_soak_runs_every_fuzz_test_on_ten_times_the_examples(tmp_path: Path) -> None:
    (tmp_path / "examples_reporter.py").write_text(REPORTER, encoding="utf-8")
    runs = {}
    for name, options in (("plain", []), ("soak", ["--soak"])):
        env = {
            **os.environ,
            "EXAMPLES_REPORT": str(tmp_path / f"{name}.json"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.getenv("PYTHONPATH")])),
        }
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "examples_reporter", *options, "tests/reliability"]
        # Only collected, not run: both at once, in a few seconds.
        runs[name] = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for run in runs.values():
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output
    plain = json.loads((tmp_path / "plain.json").read_text(encoding="utf-8"))
    soak = json.loads((tmp_path / "soak.json").read_text(encoding="utf-8"))

    assert plain, "no property-based test collected"
    assert soak.keys() == plain.keys()
    assert all(soak[test] == SOAK_FACTOR * plain[test] for test in plain), (plain, soak)
