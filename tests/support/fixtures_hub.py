"""Hub emulator fixtures (auto-loaded by conftest.py as a pytest plugin).

* ``hub_emulator`` (session): a :class:`hub_emulator.HubEmulator` serving on a free 127.0.0.1 port in a
  background thread. Use ``hub_emulator.log`` / ``inject_fault`` / ``lfs_uploads()`` in assertions.
* ``hub_env`` (function): an environment dict for SUBPROCESSES that talk to the emulator:
  ``HF_ENDPOINT``, a fresh random ``HF_TOKEN`` (``hf_dummy...``), ``HF_HUB_DISABLE_XET=1``, a fresh empty
  ``HF_HOME`` (so every process starts with an empty cache), no ``HF_HUB_OFFLINE``. It also sets the
  same variables in this process (monkeypatch, undone after the test).

How to use it. huggingface_hub, datasets and evaluate read ``HF_ENDPOINT`` once, at import: setting it
in an already-running pytest process changes nothing for them. So either

1. run the client code in a subprocess: ``subprocess.run([sys.executable, "-c", code], env=hub_env)``
   (or ``run_cli([...], env=hub_env)``) — the way to test ``load_dataset`` / ``evaluate.load`` /
   ``from_pretrained`` "in a fresh process with an empty cache"; or
2. in-process, pass the endpoint explicitly: ``HfApi(endpoint=hub_env["HF_ENDPOINT"],
   token=hub_env["HF_TOKEN"])``.

Call ``hub_emulator.reset_log()`` / ``clear_faults()`` at the start of a test that counts requests;
give each test its own repo names (the store lives for the whole session).
"""

from __future__ import annotations

import os
import secrets
import tempfile

import pytest
from hub_emulator import HubEmulator

HUB_USER = "user"


@pytest.fixture(scope="session")
def hub_emulator():
    server = HubEmulator(("127.0.0.1", 0), user=HUB_USER).start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub_emulator, monkeypatch, tmp_path_factory) -> dict:
    token = "hf_dummy" + secrets.token_hex(12)
    values = {
        "HF_ENDPOINT": hub_emulator.endpoint,
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",  # evaluate would HEAD s3.amazonaws.com otherwise
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE",
                "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_MODULES_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TMPDIR", tempfile.gettempdir())
    return env
