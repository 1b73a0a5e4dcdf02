"""PLL scoring on Ray Data gives the local path's output: ``cerbero-hf score --engine ray`` and the ``score``
stage with a Ray engine write the same rows, ids, token counts, kept/rejected split, features and card as the
local path (NLLs within 1e-6), on a new local cluster and through a two-node cluster, with a scoring actor
killed mid-run, and after a driver killed mid-run (the re-run skips the finished blocks); and no process of a
run looks up a host name.

The corpora are the bundled samples in ``messages`` form: the OASST-shaped one through the ``seeds`` stage (63
conversations, as JSON lines: the staging path) and the first rows of the Fauno-shaped one through ``refine``
(a Hub-layout folder: read in place). Ray is slow to start on a busy machine: one two-node cluster serves the
tests that use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cerbero_hf.engine import EngineConfig
from cerbero_hf.stages.quality.folders import PARTIAL

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "cerbero_hf" / "data"
OFFLINE_SITE = ROOT / "tests" / "support" / "offline_site"
SEED_BLOCKS = 8  # 63 conversations in blocks of 8 rows
REFINED_ROWS = 24


def _site_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("offline_sitecustomize", OFFLINE_SITE / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _offline_env(log: Path, **extra) -> dict:
    env = dict(os.environ, CERBERO_HF_DNS_LOG=str(log), OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(OFFLINE_SITE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    return env


def _lookups(log: Path) -> list[str]:
    """The logged lookups of names, and TCP connections, that could leave the machine. Ray's dashboard process
    asks the cloud metadata servers at start-up, and a `ray start`-style cluster reports "usage stats disabled":
    tests/conftest.py sends both to a closed local port, so none may show here."""
    return log.read_text().splitlines() if log.exists() else []


def _nameservers() -> set[str]:
    text = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    return {parts[1] for parts in map(str.split, text.splitlines()) if len(parts) > 1 and parts[0] == "nameserver"}


def _text(output: str) -> str:
    return " ".join(output.split())  # rich wraps lines at the terminal width


def _watched(log: Path) -> str:
    return Path(str(log) + ".procs").read_text() if Path(str(log) + ".procs").exists() else ""


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The bundled samples as corpora: ``seeds`` (JSON lines, 63 rows) and ``refined`` (Hub folder, 24 rows)."""
    from datasets import Dataset

    from cerbero_hf.io import load_table, save_hub_folder
    from cerbero_hf.stages.refine.refiner import refine
    from cerbero_hf.stages.seeds.oasst import write_seeds

    base = tmp_path_factory.mktemp("corpora")
    rows = [json.loads(line) for line in (DATA / "oasst_sample_it.jsonl").read_text(encoding="utf-8").splitlines()]
    write_seeds(rows, base / "seeds-folder")
    seeds = load_table(base / "seeds-folder")
    seeds.to_json(str(base / "seeds.jsonl"), force_ascii=False)
    refine(DATA / "fauno_sample.jsonl", base / "refine-all", use_lingua=False)
    refined = load_table(base / "refine-all").select(range(REFINED_ROWS))
    save_hub_folder(base / "refined", {"default": Dataset.from_dict(refined.to_dict(), features=refined.features)})
    return SimpleNamespace(seeds=base / "seeds.jsonl", seed_rows=len(seeds), refined=base / "refined")


@pytest.fixture(scope="module")
def max_nll(corpora, tiny_mlm, tmp_path_factory) -> float:
    """A ``--max-nll`` that keeps about half of the seed conversations (the rest go to ``rejected``). Computed from
    the tiny model's scores: the model is trained afresh in each test session and its tokenizer trainer is not
    deterministic, so a fixed threshold can keep none. With the ``truncate`` policy a conversation is kept when its
    first user -> assistant exchange passes: the threshold falls in the middle third of those exchanges' NLLs."""
    from cerbero_hf.io import load_table
    from cerbero_hf.stages.quality.folders import score_dataset
    from cerbero_hf.stages.quality.pll import PLLScorer

    scored = score_dataset(load_table(corpora.seeds), PLLScorer(str(tiny_mlm), device="cpu"),
                           tmp_path_factory.mktemp("max-nll"))
    first = sorted(max(json.loads(meta)["nll"][:2]) for meta in scored["meta"])
    # the widest gap in the middle third: far from every conversation's value (Ray's NLLs may differ by 1e-6)
    k = max(range(len(first) // 3, 2 * len(first) // 3), key=lambda i: first[i] - first[i - 1])
    assert first[k] - first[k - 1] > 1e-4
    return (first[k - 1] + first[k]) / 2


@pytest.fixture(scope="module")
def local_cli(corpora, tiny_mlm, max_nll, tmp_path_factory):
    """``cerbero-hf score`` of the seeds corpus on the local engine (the CLI's own code, in this process)."""
    from cerbero_hf.cli.score import _run
    from cerbero_hf.stages.quality.stage import FilterConfig, ScoreConfig

    out = tmp_path_factory.mktemp("local-cli") / "out"
    _run(str(corpora.seeds), str(out), ScoreConfig(model=str(tiny_mlm), device="cpu"), FilterConfig(max_nll=max_nll),
         EngineConfig())
    return out


def _score_args(corpora, tiny_mlm, max_nll, out, *engine) -> list[str]:
    return ["score", str(corpora.seeds), str(out), "--model", str(tiny_mlm), "--device", "cpu", "--max-nll",
            repr(max_nll), "--engine", "ray", "--ray-cpus-per-worker", "0.5", "--ray-batch-rows", "8", *engine]


def assert_same_output(local: Path, ray_out: Path, configs=("default", "rejected")) -> None:
    """Same rows, order, ids, token counts and features per config (NLLs within 1e-6), same card text."""
    import datasets

    from cerbero_hf.io import load_config

    for config in configs:
        a, b = load_config(local, config), load_config(ray_out, config)
        assert a.features == b.features and a.column_names == b.column_names
        assert a["id"] == b["id"] and a["messages"] == b["messages"] and len(a) == len(b), config
        for x, y in zip(a, b):
            ma, mb = json.loads(x["meta"]), json.loads(y["meta"])
            assert ma.keys() == mb.keys() and ma["nll_tokens"] == mb["nll_tokens"]
            assert {k: v for k, v in x.items() if k != "meta"} == {k: v for k, v in y.items() if k != "meta"}
            assert [v is None for v in ma["nll"]] == [v is None for v in mb["nll"]]
            for u, v in zip(ma["nll"] + [ma["nll_mean"]], mb["nll"] + [mb["nll_mean"]]):
                assert u is None and v is None or abs(u - v) <= 1e-6
            assert {k: v for k, v in ma.items() if not k.startswith("nll") or k in ("nll_model", "nll_variant")} == \
                   {k: v for k, v in mb.items() if not k.startswith("nll") or k in ("nll_model", "nll_variant")}
    assert datasets.load_dataset(str(ray_out), split="train").features == \
           datasets.load_dataset(str(local), split="train").features
    body = [(d / "README.md").read_text().split("\n---\n", 1)[1] for d in (local, ray_out)]
    assert body[0] == body[1]  # the card (its YAML header holds file sizes, which follow the NLL digits)
    assert not (ray_out / PARTIAL).exists()


@pytest.mark.timeout(420)
def test_score_on_a_new_local_ray_cluster_matches_the_local_engine_offline(corpora, local_cli, tiny_mlm, max_nll,
                                                                           tmp_path):
    from cerbero_hf.io import load_config

    kept, rejected = load_config(local_cli), load_config(local_cli, "rejected")
    assert 0 < len(kept) < corpora.seed_rows and len(rejected)  # the split is a real one
    from cerbero_hf.stages.quality.ray_score import REGISTRY_ENV

    log, out = tmp_path / "lookups.log", tmp_path / "ray-out"
    env = _offline_env(log)
    env.pop(REGISTRY_ENV, None)  # no registry on this cluster
    cmd = [sys.executable, "-m", "cerbero_hf", *_score_args(corpora, tiny_mlm, max_nll, out, "--ray-num-cpus", "2")]
    trace = tmp_path / "strace.txt"
    if shutil.which("strace") and subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"]).returncode == 0:
        # every process of the run, Ray's C++ ones too: a DNS query is a connect/sendto to port 53
        cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto", "-o", str(trace), *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Ray: {SEED_BLOCKS} blocks of up to 8 rows: 0 skipped" in _text(res.stdout)
    assert f"{SEED_BLOCKS} scored by 2 actor(s) on 1 node(s)" in _text(res.stdout)
    assert_same_output(local_cli, out)
    assert "default_worker.py" in _watched(log)  # the Ray workers ran under the lookup log
    assert _lookups(log) == []
    if trace.exists():  # no process (Ray's C++ ones included) sent a query to a name server but Ray's head probe
        lines = trace.read_text().splitlines()
        assert any("connect(" in line for line in lines)  # the trace saw the run's connections
        probe = {line.split()[0] for line in _watched(log).splitlines() if "dashboard/dashboard.py" in line}
        queries = [line for line in lines if ("htons(53)" in line and line.split()[0] not in probe
                                              and any(f'"{ip}"' in line for ip in _nameservers()))]
        assert queries == []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-node ``ray.cluster_utils.Cluster`` (1 CPU each) joined by this process, its processes under the
    lookup log, and a registry actor where the scoring actors announce themselves (handle, pid, node)."""
    import ray
    from ray.cluster_utils import Cluster

    from cerbero_hf.stages.quality.ray_score import REGISTRY_ENV, REGISTRY_NAMESPACE

    log = tmp_path_factory.mktemp("dns") / "lookups.log"
    env = _offline_env(log, **{REGISTRY_ENV: "scorers"})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylets, hence every worker, start with it
    site = _site_module()
    site.install(str(log))
    nodes = None
    try:
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, log_to_driver=False)

        @ray.remote(num_cpus=0)
        class Registry:
            def __init__(self):
                self.actors = []

            def register(self, handle, pid, node):
                self.actors.append((handle, pid, node))

            def list(self):
                return self.actors

        registry = Registry.options(name="scorers", namespace=REGISTRY_NAMESPACE).remote()
        ray.get(registry.list.remote())
        yield SimpleNamespace(address=nodes.address, log=log, registry=registry)
    finally:
        ray.shutdown()
        if nodes is not None:
            nodes.shutdown()
        site.uninstall()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.timeout(420)
def test_the_score_stage_on_two_nodes_survives_a_killed_actor(cluster, corpora, tiny_mlm, tmp_path):
    import ray

    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.quality.stage import ScoreConfig, run_score
    from cerbero_hf.stages.refine.stage import RefineResult

    config = ScoreConfig(model=str(tiny_mlm), device="cpu")
    inputs = {"refine": RefineResult(refined=str(corpora.refined))}
    local = run_score(config, Context(output=tmp_path / "local", inputs=inputs))
    events = []
    ctx = Context(output=tmp_path / "ray", inputs=inputs, on_event=lambda name, stats: events.append(stats),
                  engine=EngineConfig(kind="ray", workers=2, cpus_per_worker=0.5, batch_rows=3))
    blocks, killed = ctx.output / "refined" / PARTIAL / "ray" / "blocks", {}

    def kill_one_actor_mid_run():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            actors = ray.get(cluster.registry.list.remote())
            done = len(list(blocks.glob("train-*.parquet"))) if blocks.is_dir() else 0
            if len(actors) >= 2 and done:
                killed.update(blocks_done=done, nodes={node for _, _, node in actors})
                ray.kill(actors[0][0])  # for good: Ray does not restart it
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_actor_mid_run, daemon=True)
    killer.start()
    result = run_score(config, ctx)
    killer.join(timeout=10)
    assert killed and killed["blocks_done"] < REFINED_ROWS // 3  # killed mid-run...
    assert len(killed["nodes"]) == 2  # ... one actor on each node
    # the run completes with the same output (below); whether new actors start depends on a race: the other
    # actor may finish every missing block before Ray Data notices the killed one
    assert len(ray.get(cluster.registry.list.remote())) >= 2
    assert result.refined_messages == local.refined_messages
    assert result.refined_mean_nll == pytest.approx(local.refined_mean_nll, abs=1e-4)
    assert events[-1] == {"corpus": "refined", "done": REFINED_ROWS, "total": REFINED_ROWS}
    assert_same_output(tmp_path / "local" / "refined", ctx.output / "refined", configs=("default",))
    assert _lookups(cluster.log) == []


@pytest.mark.timeout(420)
def test_a_rerun_after_the_driver_was_killed_skips_the_finished_blocks(cluster, corpora, local_cli, tiny_mlm, max_nll,
                                                                        tmp_path):
    out = tmp_path / "ray-out"
    args = _score_args(corpora, tiny_mlm, max_nll, out, "--ray-address", cluster.address)
    blocks = out / PARTIAL / "ray" / "blocks"
    with open(tmp_path / "first.log", "w") as first_log:
        driver = subprocess.Popen([sys.executable, "-m", "cerbero_hf", *args], stdout=first_log,
                                  stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + 300
        while not (blocks.is_dir() and any(blocks.glob("train-*.parquet"))):
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        driver.kill()  # SIGKILL: no clean-up of any kind
        driver.wait(timeout=30)
    done_at_kill = len(list(blocks.glob("train-*.parquet")))
    assert done_at_kill < SEED_BLOCKS
    rerun = subprocess.run([sys.executable, "-m", "cerbero_hf", *args], capture_output=True, text=True,
                           env=os.environ.copy(), timeout=380)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    skipped = int(re.search(rf"Ray: {SEED_BLOCKS} blocks of up to 8 rows: (\d+) skipped", _text(rerun.stdout))[1])
    assert done_at_kill <= skipped < SEED_BLOCKS  # the blocks on disk were not scored again, the others were
    assert_same_output(local_cli, out)
    assert "default_worker.py" in _watched(cluster.log)
    assert _lookups(cluster.log) == []
