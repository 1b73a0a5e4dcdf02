"""Text-generation servers for tests (auto-loaded by conftest.py as a pytest plugin). Shared with evaluation.

* ``transformers_serve`` (session): the real ``transformers serve`` (transformers[serving]) over the tiny
  chat model, on a free 127.0.0.1 port, started once per session from this venv with
  ``HF_HUB_OFFLINE=1`` in the SERVER's environment only (in ours it would block the client), polled on ``/health``,
  killed at session end. Yields an object with ``.url`` and ``.model``: pass ``model=<.model>`` to
  ``chat_completion`` (the server is pinned to that path and rejects ``"dummy"``).
* ``tgi_server`` (session): the in-process TGI-protocol test server of ``tests/support/tgi_server.py`` over the
  same tiny model, with injectable faults and a request log. Call ``tgi_server.reset()`` at the start of
  a test that injects faults or counts requests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


@dataclass
class ServedModel:
    url: str
    model: str
    proc: subprocess.Popen
    log_path: Path


@pytest.fixture(scope="session")
def transformers_serve(tiny_chat_lm, tmp_path_factory):
    """The real ``transformers serve`` over the tiny chat model (see module docstring)."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1")
    log_path = tmp_path_factory.mktemp("transformers-serve") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(exe), "serve", str(tiny_chat_lm), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)
    served = ServedModel(f"http://127.0.0.1:{port}", str(tiny_chat_lm), proc, log_path)
    try:
        wait_http(served.url + "/health", timeout=180, proc=proc)
        yield served
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def tgi_server(tiny_chat_lm):
    """The TGI-protocol test server over the tiny chat model, in a background thread."""
    from tgi_server import TGIServer

    server = TGIServer(str(tiny_chat_lm)).start()
    wait_http(server.url + "/health", timeout=30)
    yield server
    server.stop()
