"""Generation fan-out on Ray (a local 2-CPU Ray, two 0.5-CPU actors) against two real test-server replicas on
127.0.0.1: every seed row exactly once and in plan order, requests spread over both replicas, one shared store so
the final order-aware pass rejects nothing; the control with a store per worker lets near-duplicates through
(so the check can fail); the replay cache resumes a Ray run; a generator that rejects every request stops it; and
no process of the runs (this one, Ray's workers) looks up a host name (tests/support/offline_site).

The replicas answer by candidate, not by conversation: every conversation is offered the same sentence for its
first candidate at a position, another for its second, and so on (``_same_candidates``). With one store, the
first conversation to ask takes each sentence and the others move on to their next candidate; with a store per
worker, each worker takes the same sentences again."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures_replicas import POOL, request_seed, seed_folder

from cerbero_hf.config import from_dict
from cerbero_hf.engine import EngineConfig, ray_session
from cerbero_hf.errors import InputError
from cerbero_hf.io import load_table
from cerbero_hf.schema import get_meta
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.generate.selfchat import _int_seed
from cerbero_hf.stages.generate.stage import GenerateConfig, run_generate
from cerbero_hf.stages.seeds.stage import SeedsResult

pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(900)

N, ATTEMPTS = 8, 9  # with one store, conversation k (in time order) takes candidate k: N <= ATTEMPTS
ENGINE = dict(kind="ray", address="local", num_cpus=2, cpus_per_worker=0.5, workers=2, batch_rows=2)
ROOT = Path(__file__).resolve().parents[3]
OFFLINE_SITE = ROOT / "tests" / "support" / "offline_site"


def _site_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("offline_sitecustomize", OFFLINE_SITE / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One local Ray for the module (run_generate's own ray_session reuses it and leaves it running), started
    with the DNS-lookup log of tests/support/offline_site in this process and in every Ray worker."""
    log = tmp_path_factory.mktemp("dns") / "lookups.log"
    env = {"CERBERO_HF_DNS_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(OFFLINE_SITE), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylet, hence every worker, starts with it
    site = _site_module()
    site.install(str(log))
    try:
        with ray_session(EngineConfig(**ENGINE)) as session:
            yield SimpleNamespace(session=session, log=log)
    finally:
        site.uninstall()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _same_candidates(servers, seed: int = 42) -> None:
    """Both replicas answer candidate ``attempt`` at ``position`` with the same sentence, whatever the row."""
    candidate = {_int_seed(seed, f"seed-{i}", pos, attempt): (pos - 2) * ATTEMPTS + attempt
                 for i in range(N) for pos in (2, 3) for attempt in range(ATTEMPTS)}
    for server in servers:
        server.reset()
        server.text_fn = lambda body: POOL[candidate[request_seed(body)]]


def _config(tgi_replicas, embedder, **kw) -> GenerateConfig:
    urls = ",".join(s.url for s in tgi_replicas)
    return from_dict(GenerateConfig, {"endpoint": urls, "mode": "completion", "embedder": str(embedder),
                                      "threshold": 0.999, "lengths": [4], "max_attempts": ATTEMPTS,
                                      "backoff": 0.01, "concurrency": 4, **kw})


def _plan_ids(seeds_dir) -> list[str]:
    from cerbero_hf.stages.generate.corpus import plan_conversations

    return list(plan_conversations(load_table(seeds_dir), None, 42)["id"])


def test_one_shared_store_over_two_replicas(ray_local, tgi_replicas, tiny_embedder, tmp_path):
    a, b = tgi_replicas
    seeds_dir = seed_folder(tmp_path / "seeds", N)
    seeds = SeedsResult(seeds=str(seeds_dir))
    engine = EngineConfig(**ENGINE)
    _same_candidates(tgi_replicas)
    events = []
    config = _config(tgi_replicas, tiny_embedder, cache=str(tmp_path / "replay.sqlite"))
    result = run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}, engine=engine,
                                          on_event=lambda e, s: events.append(e)))
    rows = list(load_table(tmp_path / "out"))
    assert [r["id"] for r in rows] == _plan_ids(seeds_dir)  # every seed row exactly once, in plan order
    assert (result.conversations, result.complete, result.failed, result.near_duplicates) == (N, N, 0, 0)
    assert not (tmp_path / "out" / "rejected").exists()
    sent = [len(a.log), len(b.log)]
    print(f"\nray fan-out, one shared store: requests per replica {sent}, sent {result.requests_sent}")
    assert sum(sent) == result.requests_sent == N * (N + 1)  # conversation k took candidate k at both positions
    assert min(sent) >= sum(sent) // 4, sent  # spread over both replicas
    assert result.rejected_similar == N * (N - 1) and result.store_size == 2 * N + 2 * N
    texts = [m["content"] for r in rows for m, o in zip(r["messages"], get_meta(r)["origin"]) if o == "generated"]
    assert len(texts) == len(set(texts)) == 2 * N  # no sentence twice in the corpus
    assert events[0] == "planned" and events.count("conversations") == N
    assert "| near_duplicates | 0 |" in (tmp_path / "out" / "README.md").read_text()

    # the same run again, replicas listed the other way round: everything replays from the cache
    _same_candidates(tgi_replicas)
    config = _config(tgi_replicas[::-1], tiny_embedder, cache=str(tmp_path / "replay.sqlite"))
    again = run_generate(config, Context(output=tmp_path / "again", inputs={"seeds": seeds}, engine=engine))
    assert (len(a.log), len(b.log), again.requests_sent) == (0, 0, 0)
    assert again.requests_replayed == result.requests_sent and again.near_duplicates == 0
    assert [r["messages"] for r in load_table(tmp_path / "again")] == [r["messages"] for r in rows]


def test_control_a_store_per_worker_lets_near_duplicates_through(ray_local, tgi_replicas, tiny_embedder, tmp_path):
    """What the shared store prevents: each worker accepts the same sentences; the final pass catches them."""
    from cerbero_hf.stages.generate.embedder import Embedder
    from cerbero_hf.stages.generate.ray_generate import generate_on_ray
    from cerbero_hf.stages.generate.stage import make_backend

    seeds_dir = seed_folder(tmp_path / "seeds", N)
    _same_candidates(tgi_replicas)
    config = _config(tgi_replicas, tiny_embedder, resume=False)
    out = generate_on_ray(config, Context(output=tmp_path / "out", engine=EngineConfig(**ENGINE)),
                          load_table(seeds_dir), make_backend(config), Embedder(str(tiny_embedder)),
                          ray_local.session, shared_store=False)
    summary = out["summary"]
    print(f"\nray fan-out, a store per worker: near-duplicates {summary['near_duplicates']}, "
          f"requests per replica {[len(s.log) for s in tgi_replicas]}")
    assert summary["near_duplicates"] > 0
    rejected = list(load_table(tmp_path / "out", config="rejected"))
    assert len(rejected) == summary["near_duplicates"]
    assert all(r["rule"] == "near-duplicate" and r["reason"].startswith("near-duplicate of seed-") for r in rejected)
    kept = [r["id"] for r in load_table(tmp_path / "out")]
    assert sorted(kept + [r["id"] for r in rejected]) == sorted(_plan_ids(seeds_dir))


def test_a_generator_rejecting_every_request_stops_the_ray_run(ray_local, tgi_replicas, tiny_embedder, tmp_path):
    for server in tgi_replicas:
        server.reset()
        server.fault_fn = lambda n: "404"
    seeds = SeedsResult(seeds=str(seed_folder(tmp_path / "seeds", N)))
    with pytest.raises(InputError) as err:
        run_generate(_config(tgi_replicas, tiny_embedder, resume=False),
                     Context(output=tmp_path / "out", inputs={"seeds": seeds}, engine=EngineConfig(**ENGINE)))
    assert "failed the first 3 requests the same way: HTTP 404" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_no_host_name_was_looked_up_by_the_runs_above(ray_local):
    """Runs last in this module: the driver and the Ray workers of every run above were watched, for name lookups
    and TCP connections beyond loopback. (Ray's dashboard process asks the cloud metadata servers at start-up:
    tests/conftest.py sends that to a closed local port.)"""
    procs = Path(str(ray_local.log) + ".procs")
    assert procs.exists() and "default_worker.py" in procs.read_text()  # the workers ran under the lookup log
    assert "dashboard.py" in procs.read_text()  # Ray's own head processes too
    lines = ray_local.log.read_text().splitlines() if ray_local.log.exists() else []
    assert lines == []
