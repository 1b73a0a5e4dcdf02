"""The YAML recipe: typed sections, env expansion, overrides, manifest, skipping and resuming stages."""

import json

import pytest
import yaml

from cerbero_hf.errors import InputError
from cerbero_hf.recipe import GenerateSection, STAGES, expand_env, load_recipe, parse_recipe, run_recipe
from conftest import ROOT, run_cli

DATA = ROOT / "cerbero_hf" / "data"


def test_paper_recipe_parses_with_the_papers_numbers(monkeypatch):
    monkeypatch.setenv("TGI_URL", "http://tgi.example:8080")
    recipe = load_recipe(ROOT / "configs" / "cerbero-7b.yaml")
    assert recipe.generate.endpoint == "http://tgi.example:8080"
    assert (recipe.generate.threshold, recipe.generate.lengths, recipe.generate.max_conversations) == (0.9, [4, 6, 8, 10], 358)
    assert (recipe.filter.max_nll, recipe.filter.policy) == (2.0, "truncate")
    assert recipe.score.model == "dbmdz/bert-base-italian-xxl-cased"
    assert recipe.train["learning_rate"] == 5e-6 and recipe.train["max_length"] == 8192
    assert recipe.train["model"] == "mistralai/Mistral-7B-v0.1"
    assert recipe.evaluate.tasks == ["squad_it", "sentipolc", "ironita", "ami2020"]
    from cerbero_hf.training import TrainConfig

    TrainConfig.from_dict({k: v for k, v in recipe.train.items() if k != "enabled"})  # every train key is known


def test_env_expansion_and_defaults(monkeypatch):
    monkeypatch.setenv("A", "x")
    monkeypatch.delenv("B", raising=False)
    assert expand_env({"k": ["${A}/y", "${B:-d}", 3]}) == {"k": ["x/y", "d", 3]}


def test_unknown_keys_name_the_setting(tmp_path):
    (tmp_path / "r.yaml").write_text("generate:\n  treshold: 0.8\n")
    with pytest.raises(InputError, match=r"column 'generate.treshold': unknown setting generate.treshold"):
        load_recipe(tmp_path / "r.yaml")
    with pytest.raises(InputError, match="unknown recipe section 'sedes'"):
        parse_recipe({"sedes": {}})
    (tmp_path / "i.yaml").write_text("generate:\n  index: ivf\n")
    with pytest.raises(InputError, match=r"column 'generate.index': generate.index must be exact or hnsw, got 'ivf'"):
        load_recipe(tmp_path / "i.yaml")


def test_overrides_are_yaml_typed(tmp_path):
    (tmp_path / "r.yaml").write_text("generate:\n  threshold: 0.9\n")
    recipe = load_recipe(tmp_path / "r.yaml", ["generate.threshold=0.8", "refine.enabled=false", "train.max_steps=3"])
    assert recipe.generate.threshold == 0.8 and not recipe.enabled("refine") and recipe.train["max_steps"] == 3
    assert isinstance(recipe.generate, GenerateSection)


def _light_recipe(tmp_path) -> dict:
    """Only the stages that need no model: seeds and refine."""
    off = {s: {"enabled": False} for s in STAGES}
    return {**off, "output_dir": str(tmp_path / "run"),
            "seeds": {"input": str(DATA / "oasst_sample_it.jsonl")},
            "refine": {"inputs": [str(DATA / "fauno_sample.jsonl")], "license": "apache-2.0"}}


def test_run_records_manifest_and_skips_finished_stages(tmp_path):
    recipe = parse_recipe(_light_recipe(tmp_path))
    seen = []
    manifest = run_recipe(recipe, on_stage=lambda s, status, r: seen.append((s, status)))
    assert ("seeds", "done") in seen and ("refine", "done") in seen and ("train", "skipped") in seen
    data = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert data["stages"]["seeds"]["counts"]["paths"] == 63
    expected = json.loads((DATA / "fauno_sample_expected.json").read_text())
    assert data["stages"]["refine"]["counts"]["kept"] == expected["kept"]
    assert data["stages"]["refine"]["outputs"]["refined"] == str(tmp_path / "run" / "refined")

    # Same config again: both stages come from the manifest; a changed section re-runs itself and the
    # stages after it (their input changed), never the ones before.
    seen.clear()
    run_recipe(recipe, on_stage=lambda s, status, r: seen.append((s, status)))
    assert ("seeds", "cached") in seen and ("refine", "cached") in seen
    changed = parse_recipe({**_light_recipe(tmp_path), "refine": {"inputs": [str(DATA / "fauno_sample.jsonl")],
                                                                   "lang_action": "drop-conversation"}})
    seen.clear()
    run_recipe(changed, on_stage=lambda s, status, r: seen.append((s, status)))
    assert ("seeds", "cached") in seen and ("refine", "done") in seen
    assert manifest.path.exists()


def test_secrets_never_reach_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    data = _light_recipe(tmp_path)
    data["generate"] = {"enabled": False, "api_key_env": "MY_KEY", "endpoint": "http://x"}
    data["train"] = {"enabled": False, "hub_token": "hf_should_not_appear"}
    run_recipe(parse_recipe(data))
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert "MY_KEY" in text  # the variable's name is recorded, never its value
    assert "sk-secret-value" not in text and "hf_should_not_appear" not in text


def test_cli_run_and_bad_recipe(tmp_path, cli_env):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_light_recipe(tmp_path)))
    res = run_cli(["run", path, "--only", "seeds"], env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "seeds" in res.stdout and "manifest.json" in res.stderr
    bad = run_cli(["run", path, "--only", "sedes"], env=cli_env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "Error: column '--only': unknown stage 'sedes' in --only; expected " + ", ".join(STAGES)]
    missing = run_cli(["run", tmp_path / "nope.yaml"], env=cli_env)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr
