"""``--endpoint URL1,URL2``: one process balances requests over replicas of one model (two real test servers on
127.0.0.1); a replica that refuses connections or answers 5xx has its requests retried on another and is paused
after failures in a row (one trial request when the pause ends); a replica where nothing answers at the start is
skipped with one warning while another answers; a run where too many conversations failed ends with one line
(exit 2) after writing them; the replay cache does not care which replica answered (a run against A resumes
against B sending nothing)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest
from conftest import run_cli
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


def _warnings(caplog, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("cerbero_hf") and word in r.getMessage()]


def test_a_replica_answering_503_has_the_retries_sent_to_the_other_and_is_paused(tgi_replicas, tiny_embedder,
                                                                                 tmp_path, caplog):
    a, c = tgi_replicas
    _fresh_answers(tgi_replicas)
    c.fault_fn = lambda n: "503"  # up, but every answer is an error
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 8)))
    config = _config(f"{a.url},{c.url}", tiny_embedder, concurrency=4, resume=False)
    with caplog.at_level(logging.WARNING, logger="cerbero_hf"):
        result = run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    print(f"\nreplica C answers 503: requests A {len(a.log)}, C {len(c.log)}, retries {result.request_retries}")
    assert (result.conversations, result.complete, result.failed, result.failed_requests) == (8, 8, 0, 0)
    assert len(a.log) == 16  # every message came from A
    assert 1 <= len(c.log) <= 6, len(c.log)  # paused after 3 failures in a row (a few more were in flight)
    assert result.request_retries == len(c.log)  # each failure on C cost one retry, which A answered
    paused = _warnings(caplog, "paused")
    assert paused and c.url in paused[0] and "HTTP 503" in paused[0] and "3 failures in a row" in paused[0]
    assert a.url not in " ".join(paused)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "replica_pauses" in card and c.url in card


def test_a_paused_replica_gets_one_trial_request_and_rejoins_when_it_answers(tgi_replicas):
    a, c = tgi_replicas
    for server in tgi_replicas:
        server.reset()
        server.text_fn = lambda body: "Va bene."
    c.fault_fn = lambda n: "503" if n < 3 else "ok"  # three errors, then well again
    backend = EndpointBackend(f"{c.url},{a.url}", "completion", concurrency=1, request_attempts=3, backoff=0.01,
                              replica_pause=1.0)
    request = build_request(load_language("it"), [{"role": "user", "content": "Ciao"}], "assistant",
                            max_new_tokens=6, seed=1)

    async def run():
        first = [await backend.generate(request) for _ in range(6)]  # C fails 3 times in a row: paused
        sent_while_paused = len(c.log)
        await asyncio.sleep(1.2)  # the pause is over
        later = [await backend.generate(request) for _ in range(4)]
        return first, sent_while_paused, later

    first, sent_while_paused, later = asyncio.run(run())
    assert all(r.text == "Va bene." for r in first + later)
    assert sent_while_paused == 3 and [r.attempts for r in first[:3]] == [2, 2, 2]  # each failure retried on A
    assert len(c.log) > 3 and c.log[3]["fault"].startswith("text:")  # the trial request, answered
    assert all(r.attempts == 1 for r in later) and len(c.log) >= 5  # back in the rotation


def test_a_replica_where_nothing_answers_at_the_start_is_skipped_while_another_answers(tgi_replicas, tiny_embedder,
                                                                                      tmp_path, caplog):
    a, _ = tgi_replicas
    _fresh_answers(tgi_replicas)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 4)))
    config = _config(f"{a.url},{dead}", tiny_embedder, request_attempts=2, concurrency=4, resume=False)
    with caplog.at_level(logging.WARNING, logger="cerbero_hf"):
        result = run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    assert (result.conversations, result.complete, result.failed) == (4, 4, 0)
    assert len(a.log) == result.requests_sent == 8 and result.request_retries == 0  # nothing was sent to the dead one
    skipped = _warnings(caplog, "skipped")
    assert len(skipped) == 1 and dead in skipped[0] and a.url in skipped[0], skipped  # said once
    assert not _warnings(caplog, "paused")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "replicas_skipped" in card and dead in card


def test_the_probe_checks_every_replica_and_stops_when_none_answers(tiny_embedder, tmp_path):
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 2)))
    with pytest.raises(InputError) as err:
        run_generate(_config(",".join(dead), tiny_embedder, request_attempts=1),
                     Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    message = str(err.value)
    assert "nothing answers at" in message and dead[0] in message and dead[1] in message and "\n" not in message
    assert err.value.column == "generate.endpoint" and not (tmp_path / "out").exists()


def test_a_run_where_every_replica_fails_ends_with_one_line_after_writing_the_failed_rows(tgi_replicas, tiny_embedder,
                                                                                       tmp_path, cli_env):
    for server in tgi_replicas:
        server.reset()
        server.fault_fn = lambda n: "503"
    a, c = tgi_replicas
    out = tmp_path / "out"
    start = time.monotonic()
    res = run_cli(["generate", seed_folder(tmp_path / "seeds", 4), out, "--endpoint", f"{a.url},{c.url}",
                   "--mode", "completion", "--embedder", tiny_embedder, "--lengths", "4", "--request-attempts", "2",
                   "--backoff", "0.01", "--no-resume"], env=cli_env, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr and [x for x in lines if x.startswith("Error")] == [lines[-1]], res.stderr
    line = lines[-1]
    assert "4 of 4 conversations (100%) failed" in line and "--max-failed-share" in line and "50%" in line, line
    assert str(out) in line
    assert sum("every replica of the run is paused" in x for x in lines) == 1  # the second pause says so
    rejected = list(load_table(out, config="rejected"))  # the failed rows are still recorded
    assert len(rejected) == 4 and all("HTTP 503" in r["reason"] for r in rejected)
    assert len(a.log) + len(c.log) == 4 * 2 and time.monotonic() - start < 240


def test_the_failure_share_is_a_setting(tgi_replicas, tiny_embedder, tmp_path):
    a, c = tgi_replicas
    for server in tgi_replicas:
        server.reset()
        server.fault_fn = lambda n: "503"
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", 2)))
    config = _config(f"{a.url},{c.url}", tiny_embedder, request_attempts=1, resume=False)
    assert config.max_failed_share == 0.5
    with pytest.raises(InputError) as err:
        run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    assert "2 of 2 conversations (100%) failed" in str(err.value) and "generate.max_failed_share" in str(err.value)
    assert len(list(load_table(tmp_path / "out", config="rejected"))) == 2
    config = _config(f"{a.url},{c.url}", tiny_embedder, request_attempts=1, resume=False, max_failed_share=1.0)
    result = run_generate(config, Context(output=tmp_path / "tolerated", inputs={"seeds": seeds}))
    assert (result.conversations, result.failed, result.failed_requests) == (2, 2, 2)


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
