"""Two replicas of the TGI-protocol test server (auto-loaded by conftest.py as a pytest plugin), and seeds for them.

* ``tgi_replicas`` (session): two in-process :class:`tgi_server.TGIServer` instances over the same tiny chat model,
  each on its own 127.0.0.1 port with its own request log: what the endpoint backend balances across
  (``--endpoint URL1,URL2``) and what the Ray generation fan-out is checked against. Call ``reset()`` on each at
  the start of a test that counts requests or sets ``text_fn``.
* :func:`seed_folder`: a seeds folder of ``n`` two-message conversations; :data:`POOL`: distinct sentences the
  tiny embedder tells apart (pairwise cosine below 0.995; the seeds' sentences are not among them), for answers.
* :func:`request_seed`: the ``seed`` of a request body (chat or TGI completion).
"""

from __future__ import annotations

import pytest

from cerbero_hf.tiny_models import italian_sentences

_SENTENCES = list(dict.fromkeys(italian_sentences(400)))
POOL = _SENTENCES[40:]  # answers (the handwritten sentences and the first templates are the seeds')


def seed_folder(path, n: int = 8):
    """A seeds folder (Hub layout) of ``n`` user/assistant conversations ``seed-0`` .. ``seed-<n-1>``."""
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"seed-{i}", [{"role": "user", "content": _SENTENCES[2 * i]},
                                   {"role": "assistant", "content": _SENTENCES[2 * i + 1]}], "oasst",
                     {"origin": ["seed", "seed"]}) for i in range(n)]
    save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())})
    return path


def request_seed(body: dict):
    """The sampling seed of a request body: ``seed`` (chat) or ``parameters.seed`` (TGI completion)."""
    return body.get("seed", (body.get("parameters") or {}).get("seed"))


@pytest.fixture(scope="session")
def tgi_replicas(tiny_chat_lm):
    from fixtures_servers import wait_http
    from tgi_server import TGIServer

    servers = [TGIServer(str(tiny_chat_lm)).start() for _ in range(2)]
    for server in servers:
        wait_http(server.url + "/health", timeout=30)
    yield servers
    for server in servers:
        server.stop()
