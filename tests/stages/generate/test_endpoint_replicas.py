"""``--endpoint URL1,URL2``: one process balances requests over replicas of one model (two real test servers on
127.0.0.1), a replica that refuses connections has its requests retried on another, a probe checks every replica,
and the replay cache does not care which replica answered (a run against A resumes against B sending nothing)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from fixtures_replicas import POOL, seed_folder
from fixtures_servers import free_port

from cerbero_hf.config import from_dict
from cerbero_hf.errors import InputError
from cerbero_hf.io import load_table
from cerbero_hf.languages import load_language
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.generate.backends import EndpointBackend
from cerbero_hf.stages.generate.selfchat import build_request
from cerbero_hf.stages.generate.stage import GenerateConfig, run_generate
from cerbero_hf.stages.seeds.stage import SeedsResult

pytestmark = pytest.mark.timeout(600)


def _fresh_answers(servers) -> None:
    """Both replicas answer every request with a new sentence of POOL (never seen before in this run)."""
    counter = itertools.count()
    for server in servers:
        server.reset()
        server.text_fn = lambda body: POOL[next(counter)]


def _config(endpoint: str, embedder, **kw) -> GenerateConfig:
    return from_dict(GenerateConfig, {"endpoint": endpoint, "mode": "completion", "embedder": str(embedder),
                                      "threshold": 0.999, "lengths": [4], "backoff": 0.01, **kw})


def _ids(folder) -> list[str]:
    ids = [r["id"] for r in load_table(folder)]
    if (folder / "rejected").exists():
        ids += [r["id"] for r in load_table(folder, config="rejected")]
    return ids


def test_requests_are_spread_over_both_replicas_and_every_seed_is_generated_once(tgi_replicas, tiny_embedder,
                                                                                tmp_path):
    a, b = tgi_replicas
    _fresh_answers(tgi_replicas)
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 8)))
    config = _config(f"{a.url},{b.url}", tiny_embedder, concurrency=4, resume=False)
    result = run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    assert (result.conversations, result.complete, result.failed) == (8, 8, 0)
    assert sorted(_ids(tmp_path / "out")) == [f"seed-{i}" for i in range(8)]  # every seed row exactly once
    sent = [len(a.log), len(b.log)]
    print(f"\none process, two replicas: requests per replica {sent}")
    assert sum(sent) == result.requests_sent == 16
    assert min(sent) >= 6, sent  # balanced (least in flight, then fewest sent), not all on the first replica
    card = (tmp_path / "out" / "README.md").read_text()
    assert a.url in card and b.url in card


def test_a_run_against_one_replica_resumes_against_another_sending_nothing(tgi_replicas, tiny_embedder, tmp_path):
    a, b = tgi_replicas
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 4)))
    cache = str(tmp_path / "replay.sqlite")
    first_rows = first = None
    for k, endpoint in enumerate((a.url, b.url, f"{b.url},{a.url}")):  # no model name: the key has none either
        _fresh_answers(tgi_replicas)
        out = tmp_path / f"out-{k}"
        result = run_generate(_config(endpoint, tiny_embedder, cache=cache), Context(output=out, inputs={"seeds": seeds}))
        rows = list(load_table(out))
        if k == 0:  # the first run, against replica A only
            first_rows, first = rows, result
            assert len(a.log) == result.requests_sent == 8 and not b.log
            continue
        assert (len(a.log), len(b.log), result.requests_sent) == (0, 0, 0)  # replayed, whoever answers now
        assert result.requests_replayed == first.requests_sent
        assert [r["messages"] for r in rows] == [r["messages"] for r in first_rows]


def test_with_a_model_name_the_cache_key_is_the_name_not_the_url():
    request = build_request(load_language("it"), [{"role": "user", "content": "Ciao"}], "assistant", seed=1)
    from cerbero_hf.stages.generate.backends import payload_hash

    one = EndpointBackend("http://127.0.0.1:1", model="served")
    two = EndpointBackend("http://127.0.0.2:2,http://127.0.0.3:3", model="served")
    other = EndpointBackend("http://127.0.0.1:1", model="another")
    assert payload_hash(one, request) == payload_hash(two, request) != payload_hash(other, request)
    assert two.model_id == "served" and one.describe()["url"] == "http://127.0.0.1:1"


def test_a_replica_that_refuses_connections_has_its_requests_retried_on_the_other(tgi_replicas):
    a, _ = tgi_replicas
    a.reset()
    a.text_fn = lambda body: "Va bene."
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = EndpointBackend(f"{dead},{a.url}", "completion", request_attempts=3, backoff=0.01)
    request = build_request(load_language("it"), [{"role": "user", "content": "Ciao"}], "assistant",
                            max_new_tokens=6, seed=1)

    async def burst_then_one():
        results = await asyncio.gather(*(backend.generate(request) for _ in range(6)))
        return results, await backend.generate(request)

    results, later = asyncio.run(burst_then_one())
    assert all(r.text == "Va bene." for r in results + [later])  # every request answered
    refused = backend.sent_to[dead]
    assert refused >= 1 and sum(r.attempts for r in results) == 6 + refused  # each refusal cost one retry
    assert len(a.log) == 7 and later.attempts == 1  # the refusing replica is paused: no new request goes there
    assert backend.sent_to[dead] == refused


def test_the_probe_checks_every_replica_and_names_the_silent_one(tgi_replicas, tiny_embedder, tmp_path):
    a, _ = tgi_replicas
    dead = f"http://127.0.0.1:{free_port()}"
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 2)))
    with pytest.raises(InputError) as err:
        run_generate(_config(f"{a.url},{dead}", tiny_embedder, request_attempts=1),
                     Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    assert f"nothing answers at {dead}:" in str(err.value) and a.url not in str(err.value)
    assert err.value.column == "generate.endpoint" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("endpoint,text", [
    ("http://127.0.0.1:1,not-a-url", "got 'not-a-url'"),
    ("http://127.0.0.1:1,", "got ''"),
    ("http://127.0.0.1:1,http://127.0.0.1:1/", "lists a URL twice"),
])
def test_every_url_of_the_list_is_checked(endpoint, text):
    with pytest.raises(InputError) as err:
        GenerateConfig(endpoint=endpoint)
    assert text in str(err.value) and err.value.column == "generate.endpoint"
    assert EndpointBackend(" http://127.0.0.1:1/ , http://127.0.0.1:2").urls == ["http://127.0.0.1:1",
                                                                                   "http://127.0.0.1:2"]
    GenerateConfig(endpoint="http://127.0.0.1:1, http://127.0.0.1:2")  # spaces after commas are fine
