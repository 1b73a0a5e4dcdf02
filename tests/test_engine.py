"""The engine choice: config checks, the address order, actor-pool sizing that cannot hang, and a real local Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cerbero_hf.engine import EngineConfig, resolve_address, size_pool
from cerbero_hf.errors import InputError
from cerbero_hf.recipe import parse_recipe
from cerbero_hf.stages import NAMES


def test_the_address_comes_from_the_flag_then_ray_address_then_a_new_local_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(EngineConfig(kind="ray")) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_address(EngineConfig(kind="ray")) == "10.0.0.5:6379"
    assert resolve_address(EngineConfig(kind="ray", address="ray://head:10001")) == "ray://head:10001"


def test_the_pool_leaves_one_cpu_for_ray_datas_read_and_write_tasks():
    assert size_pool(EngineConfig(kind="ray"), cluster_cpus=2) == 1
    assert size_pool(EngineConfig(kind="ray"), cluster_cpus=16) == 15
    assert size_pool(EngineConfig(kind="ray", cpus_per_worker=0.5), cluster_cpus=2) == 2
    assert size_pool(EngineConfig(kind="ray", cpus_per_worker=4), cluster_cpus=16) == 3
    # GPU actors: as many as the GPUs hold
    assert size_pool(EngineConfig(kind="ray", gpus_per_worker=0.5), cluster_cpus=16, cluster_gpus=2) == 4


@pytest.mark.parametrize("config, cpus, gpus", [
    (EngineConfig(kind="ray", workers=2), 2, 0),  # two 1-CPU actors on 2 CPUs: ray#44687 hangs
    (EngineConfig(kind="ray"), 1, 0),  # nothing left for an actor
    (EngineConfig(kind="ray", workers=3, gpus_per_worker=1), 16, 2),
])
def test_a_pool_that_would_hang_is_a_one_line_error_before_anything_starts(config, cpus, gpus):
    with pytest.raises(InputError) as err:
        size_pool(config, cluster_cpus=cpus, cluster_gpus=gpus)
    assert "engine." in str(err.value) and "\n" not in str(err.value)


def test_the_recipe_engine_section_is_checked_at_parse_time():
    disabled = {name: {"enabled": False} for name in NAMES}
    with pytest.raises(InputError, match="engine.kind"):
        parse_recipe({"engine": {"kind": "spark"}, **disabled})
    with pytest.raises(InputError, match="engine.workers"):
        parse_recipe({"engine": {"kind": "ray", "workers": 0}, **disabled})
    with pytest.raises(InputError, match="engine.gpus"):
        parse_recipe({"engine": {"kind": "ray", "gpus": 1}, **disabled})
    assert parse_recipe(disabled).engine == EngineConfig()  # local unless the recipe says otherwise


def test_the_engine_does_not_change_any_stage_cache_key():
    from cerbero_hf.recipe import stage_digest

    disabled = {name: {"enabled": False} for name in NAMES}
    local, ray = parse_recipe(disabled), parse_recipe({"engine": {"kind": "ray", "workers": 3}, **disabled})
    digests: dict[str, str] = {}
    for name in NAMES:
        assert stage_digest(local, name, dict(digests)) == stage_digest(ray, name, dict(digests))


def test_the_cli_flags_are_checked_like_the_recipe_keys(tmp_path):
    run = subprocess.run([sys.executable, "-m", "cerbero_hf", "score", str(tmp_path / "in"), str(tmp_path / "out"),
                          "--engine", "spark"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--engine" in run.stderr and "local or ray" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(180)
def test_a_real_local_cluster_is_sized_joined_and_left(monkeypatch):
    import ray

    from cerbero_hf.engine import ray_session

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    with ray_session(EngineConfig(kind="ray", num_cpus=2, cpus_per_worker=0.5)) as session:
        assert ray.is_initialized()
        assert session.address == "local" and session.cpus == 2 and session.workers == 2
        assert session.actor_options() == {"num_cpus": 0.5} and session.torch_threads == 1
    assert not ray.is_initialized()  # a cluster it started is shut down
    with pytest.raises(InputError, match="would hang"):
        with ray_session(EngineConfig(kind="ray", num_cpus=2, workers=2)):
            pass
    assert not ray.is_initialized()
