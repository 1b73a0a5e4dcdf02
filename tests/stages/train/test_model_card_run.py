"""The cards a training run leaves: the full model's, the LoRA adapter's (its checkpoints' too) and the merged model's
name the base model and the corpora the way the Hub reads them, by Hub id or folder name, never by a local path;
PEFT's own card and ``adapter_config.json`` (which name the base by the path it was loaded from) are rewritten;
the merge, a resume and ``evaluate --update-card`` still work on what is left, and ``model-index`` names the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, run_cli
from fixtures_train import train_config
from huggingface_hub import ModelCard
from huggingface_hub.utils import validate_repo_id

from cerbero_hf.stages.train.config import TrainConfig
from cerbero_hf.stages.train.model_card import write_card
from cerbero_hf.stages.train.trainer import train

PUBLIC_FILES = ("README.md", "adapter_config.json")


def _cfg(base, corpora, out, **settings):
    return train_config(base, corpora, out, save_steps=1, **settings)


def _hub_metadata(folder: Path):
    """The card's metadata as huggingface_hub parses the README text; base_model and datasets are Hub names."""
    data = ModelCard((folder / "README.md").read_text(encoding="utf-8")).data
    assert isinstance(data.base_model, str) and isinstance(data.datasets, list)
    for name in (data.base_model, *data.datasets):
        assert isinstance(name, str)
        validate_repo_id(name)
    return data


def test_lora_run_cards_name_base_and_corpora_without_local_paths(base_lm, corpora, tmp_path, tmp_path_factory):
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.evaluate.stage import EvaluateConfig, run_evaluate

    out = tmp_path / "model"  # the recipe's folder names: model, model-merged
    res = train(_cfg(base_lm, corpora, out, max_steps=2, lora=True, lora_r=8, merge_lora=True,
                     model_name="cerbero-tiny"))
    merged = Path(res.merged)
    assert merged == tmp_path / "model-merged" and (merged / "config.json").is_file()
    public = sorted(p for root in (out, merged) for p in root.rglob("*") if p.name in PUBLIC_FILES)
    assert {p.relative_to(tmp_path).as_posix() for p in public} == {
        f"model{sub}/{name}" for sub in ("", "/checkpoint-1", "/checkpoint-2") for name in PUBLIC_FILES} | {
        "model-merged/README.md"}
    local = [str(tmp_path_factory.getbasetemp()), str(base_lm), *corpora.values()]
    for path in public:
        text = path.read_text(encoding="utf-8")
        assert not [p for p in local if p in text], f"{path} names a local path"

    for folder in (out, out / "checkpoint-1", merged):
        data = _hub_metadata(folder)
        assert data.base_model == "lm" and data.datasets == ["fauno", "generated"], folder
        assert data.model_name == "cerbero-tiny" and "cerbero-hf" in data.tags
        assert data.library_name == ("transformers" if folder == merged else "peft")
    for folder in (out, out / "checkpoint-2"):
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "lm"

    # a resume loads the adapter of checkpoint-2 (its config rewritten) and goes on
    again = train(_cfg(base_lm, corpora, out, max_steps=3, lora=True, lora_r=8, model_name="cerbero-tiny"))
    assert again.resumed_from.endswith("checkpoint-2") and again.steps == 3
    assert _hub_metadata(out / "checkpoint-3").base_model == "lm"

    # evaluate --update-card on the merged model: model-index names the model, not the folder
    config = EvaluateConfig(tasks=["ironita"], data_dir=str(FIXTURES / "eval"), limit=1, max_new_tokens=4,
                            device="cpu", threads=1)
    run_evaluate(config, Context(output=tmp_path / "eval", inputs={"train": res}))
    card = ModelCard.load(merged / "README.md")
    assert {r.dataset_name for r in card.data.eval_results} == {"ironita"}
    assert card.data.to_dict()["model-index"][0]["name"] == "cerbero-tiny"
    assert _hub_metadata(merged).base_model == "lm"


def test_lora_pushes_carry_no_local_path(base_lm, corpora, hub_emulator, hub_env, tmp_path, tmp_path_factory):
    """``cerbero-hf train --lora --push-to-hub``: every checkpoint push (``last-checkpoint/``, sent right after the
    save) and the final one hold our card and a public ``adapter_config.json``, never PEFT's local path."""
    repo = "user/cerbero-tiny-lora"
    r = run_cli(["train", f"fauno={corpora['fauno']}", f"generated={corpora['generated']}", str(tmp_path / "out"),
                 "--model", str(base_lm), "--lora", "--lora-r", "8", "--push-to-hub", "--hub-model-id", repo,
                 "--max-steps", "2", "--save-steps", "1", "--max-length", "128", "--per-device-train-batch-size", "4",
                 "--gradient-accumulation-steps", "1", "--warmup-steps", "0", "--eval-fraction", "0"], env=hub_env)
    assert r.returncode == 0, r.stderr[-3000:]
    files = hub_emulator.files("model", repo)
    for path in ("README.md", "adapter_config.json", "last-checkpoint/README.md", "last-checkpoint/adapter_config.json"):
        assert path in files
    local = [str(tmp_path_factory.getbasetemp()), str(base_lm), *corpora.values()]
    leaks = [path for path, data in files.items() if path.rsplit("/", 1)[-1] in PUBLIC_FILES and
             any(p.encode() in data for p in local)]
    assert not leaks
    for path in ("README.md", "last-checkpoint/README.md"):
        data = ModelCard(files[path].decode()).data
        assert (data.base_model, data.datasets, data.library_name) == ("lm", ["fauno", "generated"], "peft")
    assert json.loads(files["last-checkpoint/adapter_config.json"])["base_model_name_or_path"] == "lm"


def test_full_model_card_of_a_local_base_and_hub_corpus(tmp_path):
    """``write_card`` for a full fine-tune from a Hub-cache copy of the base, on a local and a Hub corpus."""
    base = tmp_path / "hub" / "models--mistralai--Mistral-7B-v0.1" / "snapshots" / "0a1b2c"
    cfg = TrainConfig(model=str(base), output_dir=str(tmp_path / "runs" / "model"), model_name="cerbero-7b-it")
    report = {"corpora": [
        {"name": "generated", "path": str(tmp_path / "filtered" / "generated"), "hub_id": None, "weight": 1.0,
         "rows_used": 7},
        {"name": "fauno", "path": "user/fauno-refined", "hub_id": "user/fauno-refined", "weight": 0.5, "rows_used": 3}]}
    folder = tmp_path / "runs" / "model"
    write_card(cfg, report, ["[|Umano|]"], folder)
    data = _hub_metadata(folder)
    assert data.base_model == "mistralai/Mistral-7B-v0.1" and data.datasets == ["generated", "user/fauno-refined"]
    assert data.library_name == "transformers" and data.model_name == "cerbero-7b-it"
    assert str(tmp_path) not in (folder / "README.md").read_text()
