"""The YAML recipe: sections built from the stage registry, validation before any stage runs, env
expansion, overrides, the manifest, and caching by each stage's declared inputs."""

import json

import pytest
import yaml
from conftest import ROOT, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.recipe import STAGES, expand_env, load_recipe, parse_recipe, run_recipe, stage_digest
from cerbero_hf.resources import resource

DATA = ROOT / "cerbero_hf" / "data"


def test_paper_recipe_parses_with_the_papers_numbers(monkeypatch):
    monkeypatch.setenv("TGI_URL", "http://tgi.example:8080")
    recipe = load_recipe(ROOT / "configs" / "cerbero-7b.yaml")
    assert recipe.generate.endpoint == "http://tgi.example:8080"
    assert (recipe.generate.threshold, recipe.generate.lengths, recipe.generate.max_conversations) == (0.9, [4, 6, 8, 10], 358)
    assert (recipe.filter.max_nll, recipe.filter.policy) == (2.0, "truncate")
    assert recipe.score.model == "dbmdz/bert-base-italian-xxl-cased"
    assert recipe.train.learning_rate == 5e-6 and recipe.train.max_length == 8192
    assert recipe.train.model == "mistralai/Mistral-7B-v0.1"
    assert recipe.evaluate.tasks == ["squad_it", "sentipolc", "ironita", "ami2020"]
    assert (recipe.generate.language, recipe.train.seed) == ("it", 42)  # top-level values fill the sections


def test_env_expansion_defaults_and_unset_variables(monkeypatch):
    monkeypatch.setenv("A", "x")
    monkeypatch.delenv("B", raising=False)
    assert expand_env({"k": ["${A}/y", "${B:-d}", 3]}) == {"k": ["x/y", "d", 3]}
    with pytest.raises(InputError, match=r"column 'out': environment variable B is not set"):
        expand_env({"out": "${B}/run"})


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
    (tmp_path / "r.yaml").write_text("generate:\n  threshold: 0.9\n  endpoint: http://tgi:8080\n")
    recipe = load_recipe(tmp_path / "r.yaml", ["generate.threshold=0.8", "refine.enabled=false", "train.max_steps=3"])
    assert recipe.generate.threshold == 0.8 and not recipe.enabled("refine") and recipe.train.max_steps == 3
    # max_attempts is candidates per message; HTTP attempts per request stay their own setting
    recipe = load_recipe(tmp_path / "r.yaml", ["generate.max_attempts=2"])
    assert (recipe.generate.max_attempts, recipe.generate.request_attempts) == (2, 5)


@pytest.mark.parametrize("override, key", [
    ("generate.threshold=abc", "generate.threshold"),
    ("generate.threshold=7", "generate.threshold"),
    ("generate.concurrency=lots", "generate.concurrency"),
    ("generate.concurrency=0", "generate.concurrency"),
    ("generate.concurrency=-3", "generate.concurrency"),
    ("generate.max_attempts=0", "generate.max_attempts"),
    ("generate.request_attempts=0", "generate.request_attempts"),
    ("train.learnin_rate=0.1", "train.learnin_rate"),
    ("train.learning_rate=abc", "train.learning_rate"),
    ("filter.max_nll=-1", "filter.max_nll"),
])
def test_bad_values_are_rejected_at_parse_time(tmp_path, override, key):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_light_recipe(tmp_path)))
    with pytest.raises(InputError) as err:
        load_recipe(tmp_path / "r.yaml", [override])
    assert err.value.column == key and key in str(err.value) and "\n" not in str(err.value)


def test_an_enabled_stage_needs_its_inputs_enabled(tmp_path):
    data = _light_recipe(tmp_path)
    data["score"] = {"enabled": True}
    data["refine"] = {"enabled": False}
    with pytest.raises(InputError, match=r"stage 'score' reads the output of 'generate or refine'"):
        parse_recipe(data)


def test_an_enabled_generate_stage_names_its_generator():
    with pytest.raises(InputError, match=r"column 'generate.endpoint': no generator"):
        parse_recipe({"generate": {"threshold": 0.8}})


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

    # Same config again: both stages come from the manifest; a changed section re-runs itself only
    # (seeds and refine read nothing from each other).
    seen.clear()
    run_recipe(recipe, on_stage=lambda s, status, r: seen.append((s, status)))
    assert ("seeds", "cached") in seen and ("refine", "cached") in seen
    changed = parse_recipe({**_light_recipe(tmp_path), "refine": {"inputs": [str(DATA / "fauno_sample.jsonl")],
                                                                   "lang_action": "drop-conversation"}})
    seen.clear()
    run_recipe(changed, on_stage=lambda s, status, r: seen.append((s, status)))
    assert ("seeds", "cached") in seen and ("refine", "done") in seen
    assert manifest.path.exists()


def _digests(recipe) -> dict:
    digests = {}
    for name in STAGES:
        if recipe.enabled(name):
            digests[name] = stage_digest(recipe, name, digests)
    return digests


def test_a_stage_reruns_only_when_what_it_reads_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_OUT", str(tmp_path))
    monkeypatch.setenv("DEMO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("DEMO_DATA", str(DATA))
    demo = resource("recipes", "demo.yaml")
    before = _digests(load_recipe(demo))
    after = _digests(load_recipe(demo, ["generate.temperature=0.3"]))
    changed = {name for name in before if before[name] != after[name]}
    # generate changed; score reads it, filter reads score, train reads filter, evaluate reads train,
    # publish reads them all. refine and seeds read nothing that changed.
    assert changed == {"generate", "score", "filter", "train", "evaluate", "publish"}
    after_refine = _digests(load_recipe(demo, ["refine.lang_action=drop-conversation"]))
    assert {n for n in before if before[n] != after_refine[n]} == {"refine", "score", "filter", "train", "evaluate",
                                                                  "publish"}


def test_secrets_never_reach_the_manifest_but_settings_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    data = _light_recipe(tmp_path)
    data["generate"] = {"enabled": False, "api_key_env": "MY_KEY", "endpoint": "http://x", "max_new_tokens": 77}
    data["train"] = {"enabled": False, "hub_token": "hf_should_not_appear", "eos_token": "</s>", "pad_token": "<pad>"}
    run_recipe(parse_recipe(data))
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert "MY_KEY" in text  # the variable's name is recorded, never its value
    assert "sk-secret-value" not in text and "hf_should_not_appear" not in text
    recorded = json.loads(text)["recipe"]
    assert recorded["generate"]["max_new_tokens"] == 77  # a setting named *tokens is not a secret
    assert recorded["train"]["hub_token"] == "<redacted>"
    # settings that name a token are not secrets: redaction follows the declaration, not a word in the key
    assert (recorded["train"]["eos_token"], recorded["train"]["pad_token"]) == ("</s>", "<pad>")


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


@pytest.mark.parametrize("override", ["generate.threshold=abc", "generate.concurrency=0", "train.learnin_rate=1"])
def test_cli_run_rejects_bad_overrides_before_any_stage(tmp_path, cli_env, override):
    data = _light_recipe(tmp_path)
    data["output_dir"] = str(tmp_path / "never")
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    res = run_cli(["run", path, "--set", override], env=cli_env)
    key = override.split("=")[0]
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and key in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "never").exists()  # no stage ran, not even seeds
