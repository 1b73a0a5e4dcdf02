"""configs/ray/rayjob.yaml: the KubeRay manifest we ship holds a recipe that loads, and wires it to the job."""

from __future__ import annotations

from pathlib import Path

import yaml

from cerbero_hf.recipe import load_recipe

MANIFEST = Path(__file__).resolve().parent.parent / "configs" / "ray" / "rayjob.yaml"


def _docs():
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    return {d["kind"]: d for d in docs}


def test_the_shipped_recipe_loads_and_runs_on_ray(tmp_path, monkeypatch):
    docs = _docs()
    job = docs["RayJob"]
    urls = job["spec"]["runtimeEnvYAML"]
    env = yaml.safe_load(urls)["env_vars"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(docs["ConfigMap"]["data"]["recipe.yaml"])
    recipe = load_recipe(recipe_file)
    assert recipe.engine.kind == "ray" and recipe.engine.address is None  # RAY_ADDRESS comes from the RayJob
    assert recipe.generate.endpoint.count(",") == env["TGI_URLS"].count(",")  # every replica is used
    assert recipe.generate.api_key_env == "HF_TOKEN"  # the key's NAME; the value comes from the secret


def test_the_job_mounts_the_recipe_where_its_entrypoint_reads_it_and_pins_our_ray():
    import ray

    job = _docs()["RayJob"]
    spec = job["spec"]
    path = spec["entrypoint"].split()[-1]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    recipe_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert Path(path).parent == Path(mounts[recipe_volume])
    assert volumes[recipe_volume]["configMap"]["name"] == _docs()["ConfigMap"]["metadata"]["name"]
    # every pod sees the same /data (the actors write their blocks there)
    for group in [head] + [g["template"]["spec"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]:
        assert any(m["mountPath"] == "/data" for m in group["containers"][0]["volumeMounts"])
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__
