"""The whole demo, run once per test run and shared (auto-loaded by conftest.py as a pytest plugin).

* ``demo_run`` (session): ``cerbero-hf demo --output DIR`` in a subprocess, offline (``HF_HUB_OFFLINE=1``), once
  for the whole run: both xdist workers share it through a file lock, as they share the tiny models. Its output
  folder, stdout and stderr. Read-only: tests/test_demo.py checks the run itself, tests/report/ its report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, built_once


@pytest.fixture(scope="session")
def demo_run(tiny_models_dir) -> dict:
    """``cerbero-hf demo --output DIR`` once for the whole run: ``{"out", "run", "stdout", "stderr"}``."""
    def build(path: Path) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run([sys.executable, "-m", "cerbero_hf", "demo", "--output", str(path / "demo")],
                              capture_output=True, text=True, env=env, timeout=1500)
        (path / "stdout.txt").write_text(done.stdout)
        (path / "stderr.txt").write_text(done.stderr)
        assert done.returncode == 0, done.stderr[-3000:]

    path = built_once(tiny_models_dir.parent / "demo", build)
    return {"out": path / "demo", "run": path / "demo" / "run", "stdout": (path / "stdout.txt").read_text(),
            "stderr": (path / "stderr.txt").read_text()}
