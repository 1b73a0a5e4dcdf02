"""The publish stage: its config, the corpus cards built from typed results, local and Hub targets, and the
packaged card templates / metric module being the release layout's files byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.resources import resource
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.publish.stage import STAGE, PublishConfig, run_publish

RELEASE = {  # packaged resource -> its published copy in the repository
    "cards/generated_corpus.md.j2": "dataset_scripts/generated_corpus/README.md.j2",
    "cards/refined_corpus.md.j2": "dataset_scripts/refined_corpus/README.md.j2",
    "cards/training_mix.md.j2": "dataset_scripts/training_mix/README.md.j2",
    "cards/model.md.j2": "model_cards/cerbero.md.j2",
}


def test_release_layout_is_the_packaged_resources():
    for packaged, published in RELEASE.items():
        assert resource(*packaged.split("/")).read_bytes() == (ROOT / published).read_bytes(), published
    templates = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("dataset_scripts/*/README.md.j2")}
    assert templates | {"model_cards/cerbero.md.j2"} == set(RELEASE.values())  # no published template unchecked
    packaged = {p.name: p.read_bytes() for p in resource("mlm_nll").iterdir() if p.is_file()}
    published = {p.name: p.read_bytes() for p in (ROOT / "dataset_scripts" / "mlm_nll").iterdir() if p.is_file()}
    assert packaged.keys() == published.keys() and {"mlm_nll.py", "pll_core.py"} <= packaged.keys()
    assert [n for n in packaged if packaged[n] != published[n]] == []


def test_publish_config_checks_and_one_line_cli_errors(tmp_path):
    with pytest.raises(InputError, match="publish.retries must be >= 0"):
        PublishConfig(retries=-1)
    with pytest.raises(InputError, match="publish.backoff"):
        PublishConfig(backoff=-0.5)
    assert STAGE.enabled is False and STAGE.any_of and {"filter", "train"} <= set(STAGE.inputs)
    proc = run_cli(["publish", "user/x", tmp_path, "--retries", "-1"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--retries must be >= 0" in proc.stderr
    proc = run_cli(["publish", "user/x", tmp_path, "--token-env", "CERBERO_NO_SUCH_VAR"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "CERBERO_NO_SUCH_VAR is not set" in proc.stderr


TYPED = """
import importlib

def typed(package, name, **values):
    # the real result class of an earlier stage, built from its field values
    return getattr(importlib.import_module(f"cerbero_hf.stages.{package}.stage"), name)(**values)
"""
exec(TYPED)  # defines typed(): the same code here and in the subprocess of the Hub test


def corpus(path: Path, source: str, n: int, license: str | None = None) -> Path:
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"{source}{i}", [{"role": "user", "content": f"Domanda {i}?"},
                                      {"role": "assistant", "content": f"Risposta {i}."}], source,
                     {"nll": [0.5 + i / 10, 1.5]}) for i in range(n)]
    data = {"license": license} if license else None
    return save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())}, card_data=data)


@pytest.fixture
def specs(tmp_path, tiny_chat_lm) -> dict:
    """What each earlier stage returned: ``{stage: (stage package, result class, fields)}``."""
    import shutil

    merged = tmp_path / "model" / "merged"
    shutil.copytree(tiny_chat_lm, merged)
    return {
        "seeds": ("seeds", "SeedsResult", {"paths": 5, "trees": 2}),
        "generate": ("generate", "GenerateResult", {"conversations": 6, "accepted_messages": 17,
                                                    "rejected_messages": 4, "rejected_similar": 3,
                                                    "failed": 1}),
        "refine": ("refine", "RefineResult", {"input": 9, "kept": 7, "removed": {"duplicates": 2},
                                              "refined": str(corpus(tmp_path / "refined", "fauno", 7, "gpl-3.0"))}),
        "filter": ("quality", "FilterResult", {
            "generated_kept": 4, "generated_rejected": 2, "refined_kept": 6, "refined_rejected": 1,
            "generated": str(corpus(tmp_path / "filtered" / "generated", "gen", 4)),
            "refined": str(corpus(tmp_path / "filtered" / "refined", "fauno", 6))}),
        "train": ("train", "TrainResult", {"model": str(tmp_path / "model"), "merged": str(merged)}),
    }


@pytest.fixture
def inputs(specs) -> dict:
    return {stage: typed(pkg, name, **values) for stage, (pkg, name, values) in specs.items()}  # noqa: F821


def test_run_publish_to_a_local_dir_with_cards_from_typed_results(tmp_path, inputs):
    from huggingface_hub import DatasetCard

    hub = tmp_path / "hub"
    config = PublishConfig(local_dir=str(hub), corpus_name="chat-demo", model_name="tiny", seed=7)
    result = run_publish(config, Context(output=tmp_path / "publish", inputs=inputs))
    assert result.published == 4 and result.staged == str(tmp_path / "publish")
    assert result.targets == {"dataset:chat-demo-generated": str(hub / "datasets" / "chat-demo-generated"),
                              "dataset:chat-demo-refined": str(hub / "datasets" / "chat-demo-refined"),
                              "metric:mlm_nll": str(hub / "spaces" / "mlm_nll"),
                              "model:tiny": str(hub / "models" / "tiny")}
    assert (hub / "models" / "tiny" / "config.json").is_file()  # the merged model, not the adapter folder
    assert (hub / "spaces" / "mlm_nll" / "mlm_nll.py").read_bytes() == resource("mlm_nll", "mlm_nll.py").read_bytes()
    gen = (hub / "datasets" / "chat-demo-generated" / "README.md").read_text()
    for row in ("| seed conversations | 5 |", "| generated conversations | 6 |", "| accepted messages | 17 |",
                "| rejected by similarity | 3 |", "| failed conversations | 1 |", "| kept after NLL filter | 4 |",
                "| rejected parts (NLL filter) | 2 |"):
        assert row in gen
    assert 'load_dataset("local/chat-demo-generated"' in gen and "`seeds.recipe` | `7`" in gen
    assert DatasetCard(gen).data.license == "cc-by-nc-4.0"
    ref = (hub / "datasets" / "chat-demo-refined" / "README.md").read_text()
    for row in ("| input conversations | 9 |", "| removed by duplicates | 2 |", "| refined | 7 |",
                "| kept after NLL filter | 6 |"):
        assert row in ref
    assert DatasetCard(ref).data.license == "gpl-3.0"  # the refine stage's license, read from its folder
    assert (hub / "datasets" / "chat-demo-refined" / "images" / "nll_histogram.png").stat().st_size > 1000
    assert json.loads(json.dumps(result.to_dict()))["targets"] == result.targets  # manifest-safe


def test_run_publish_needs_a_namespace_or_local_dir(tmp_path):
    with pytest.raises(InputError, match="publish.namespace is empty"):
        run_publish(PublishConfig(), Context(output=tmp_path / "publish"))


def test_run_publish_to_the_hub_emulator(tmp_path, specs, hub_emulator, hub_env):
    """Through the real clients in a fresh process (huggingface_hub reads HF_ENDPOINT and the Xet switch at
    import), with the token from HF_TOKEN."""
    import subprocess
    import sys
    import textwrap

    code = TYPED + textwrap.dedent(f"""
        import json
        from pathlib import Path
        from cerbero_hf.stages.base import Context
        from cerbero_hf.stages.publish.stage import PublishConfig, run_publish
        specs = json.loads({json.dumps(json.dumps(specs))})
        inputs = {{stage: typed(pkg, name, **values) for stage, (pkg, name, values) in specs.items()}}
        config = PublishConfig(namespace="user", corpus_name="stage-pub", model_name="stage-model", backoff=0.05)
        print(json.dumps(run_publish(config, Context(output=Path({str(tmp_path / "publish")!r}), inputs=inputs))
                         .to_dict()))
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=hub_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["published"] == 4 and result["targets"]["dataset:stage-pub-generated"] == "user/stage-pub-generated"
    files = hub_emulator.files("dataset", "user/stage-pub-generated")
    assert "README.md" in files and "images/nll_histogram.png" in files
    assert b"| accepted messages | 17 |" in files["README.md"]
    assert "mlm_nll.py" in hub_emulator.files("space", "user/mlm_nll")
    assert hub_emulator.repos[("models", "user/stage-model")].private  # a recipe publishes privately by default
    assert hub_emulator.repos[("datasets", "user/stage-pub-refined")].private
    token = hub_env["HF_TOKEN"]
    assert token not in proc.stdout + proc.stderr
    for path in (tmp_path / "publish").rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes()


def test_card_settings_come_from_the_earlier_stages_configs_when_the_runner_passes_them():
    from cerbero_hf.languages import load_language
    from cerbero_hf.stages.generate.stage import GenerateConfig
    from cerbero_hf.stages.publish.stage import card_settings
    from cerbero_hf.stages.quality.stage import FilterConfig, ScoreConfig
    from cerbero_hf.stages.refine.stage import RefineConfig

    pack = load_language("it")
    configs = {"generate": GenerateConfig(model="gen-model", threshold=0.8, api_key_env="MY_KEY"),
               "score": ScoreConfig(), "filter": FilterConfig(max_nll=2.5),
               "refine": RefineConfig(inputs=["fauno.jsonl"], license="gpl-3.0")}
    gen = card_settings({}, "generated", configs)
    assert gen["models"] == {"mlm": pack.mlm, "generator": "gen-model", "embedder": pack.embedder}
    assert gen["thresholds"] == {"similarity": 0.8, "nll": 2.5} and gen["max_nll"] == 2.5
    assert gen["recipe"]["generate"]["lengths"] == [4, 6, 8, 10] and gen["recipe"]["filter"]["policy"] == "truncate"
    ref = card_settings({}, "refined", configs)
    assert ref["license"] == "gpl-3.0" and "similarity" not in ref["thresholds"] and "refine" in ref["recipe"]
    assert card_settings({}, "generated") == {"models": {}, "thresholds": {}, "recipe": {},
                                              "license": "cc-by-nc-4.0", "max_nll": None}
