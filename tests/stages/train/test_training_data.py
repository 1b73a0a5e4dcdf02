"""Training-set preparation, the recipe config and the chat templates (paper §4, Table 1)."""

import pytest
from conftest import ROOT

from cerbero_hf.chat_template import chat_template
from cerbero_hf.cli.train import parse_train_args
from cerbero_hf.errors import InputError
from cerbero_hf.io import save_hub_folder
from cerbero_hf.languages import ITALIAN
from cerbero_hf.schema import features, make_row
from cerbero_hf.stages.train.config import TrainConfig
from cerbero_hf.stages.train.data import Corpus, build_training_set, select_corpora, training_messages
from cerbero_hf.stages.train.trainer import templates

MSGS = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Ciao! Come posso aiutarti?"},
        {"role": "user", "content": "Grazie"}, {"role": "assistant", "content": "Prego."}]


def _corpus(folder, name, n, assistant_role="assistant", bad=()):
    from datasets import Dataset

    rows = []
    for i in range(n):
        msgs = [{"role": "system", "content": "La conversazione tra umano e assistente AI."},
                {"role": "user", "content": f"{name} domanda {i}"},
                {"role": assistant_role, "content": f"{name} risposta {i}"}]
        rows.append(make_row(f"{name}-{i}", msgs[:2] if i in bad else msgs, source=name))
    save_hub_folder(folder, {"default": Dataset.from_list(rows, features=features())})
    return str(folder)


def test_corpus_specs():
    c = Corpus.parse("fauno=./out/fauno-refined@0.5")
    assert (c.name, c.path, c.weight, c.hub_id) == ("fauno", "./out/fauno-refined", 0.5, None)
    assert Corpus.parse("/data/Generated/").name == "generated"
    assert Corpus.parse("user/fauno-refined").hub_id == "user/fauno-refined"
    assert Corpus.parse({"path": "x", "name": "gen", "weight": 2}).weight == 2
    with pytest.raises(InputError, match="bad corpus weight"):
        Corpus.parse("fauno=x@lots")
    with pytest.raises(InputError, match="needs 'path'"):
        Corpus.parse({"name": "x"})


def test_condition_presets_pick_corpora():
    cs = [Corpus.parse("fauno=a"), Corpus.parse("generated=b")]
    assert [c.name for c in select_corpora(cs, "fauno")] == ["fauno"]
    assert [c.name for c in select_corpora(cs, "generated")] == ["generated"]
    assert [c.name for c in select_corpora(cs, "full")] == ["fauno", "generated"]
    with pytest.raises(InputError, match="needs a corpus named fauno"):
        select_corpora([Corpus.parse("generated=b")], "fauno")
    with pytest.raises(InputError, match="unknown condition 'both'"):
        select_corpora(cs, "both")


def test_fauno_roles_and_system_prompts():
    msgs = [{"role": "system", "content": "header"}, {"role": "user", "content": "a"}, {"role": "[|AI|]", "content": "b"},
            {"role": "Human", "content": "c"}, {"role": "ai", "content": "d"}]
    out, reason = training_messages(msgs, ITALIAN)
    assert out == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                   {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}] and reason == ""
    assert training_messages([{"role": "user", "content": "a"}], ITALIAN) == (None, "no assistant message")
    assert training_messages([{"role": "robot", "content": "a"}], ITALIAN) == (None, "unknown role 'robot'")


def test_weighted_mix_seeded_and_accounted(tmp_path):
    fauno = _corpus(tmp_path / "fauno", "fauno", 10, bad={3})
    gen = _corpus(tmp_path / "gen", "generated", 4)
    ds, report = build_training_set([f"fauno={fauno}@0.5", f"generated={gen}@2"], condition="full", seed=42)
    sources = ds["source"]
    assert sources.count("fauno") == round(0.5 * 9) and sources.count("generated") == 8
    assert len(set(i for i in ds["id"] if i.startswith("generated"))) == 4  # two full copies
    assert report["skipped"] == [{"corpus": "fauno", "row": 3, "id": "fauno-3", "reason": "no assistant message"}]
    assert all(m["role"] != "system" for row in ds["messages"] for m in row)
    same, _ = build_training_set([f"fauno={fauno}@0.5", f"generated={gen}@2"], seed=42)
    other, _ = build_training_set([f"fauno={fauno}@0.5", f"generated={gen}@2"], seed=7)
    assert same["id"] == ds["id"] and other["id"] != ds["id"]
    full, rep = build_training_set([f"fauno={fauno}"], condition="fauno", seed=42)
    kept = set(full["id"]) | {s["id"] for s in rep["skipped"]}
    assert kept == {f"fauno-{i}" for i in range(10)} and len(full) == 9  # kept + skipped == input
    assert rep["corpora"][0] | {} == {"name": "fauno", "path": fauno, "hub_id": None, "weight": 1.0,
                                      "rows_in": 10, "rows_rejected": 1, "rows_used": 9}


def test_train_config_defaults_yaml_and_overrides(tmp_path):
    cfg = TrainConfig()
    assert (cfg.max_length, cfg.learning_rate, cfg.lr_scheduler_type, cfg.warmup_steps, cfg.num_train_epochs) == \
        (8192, 5e-6, "cosine", 10, 1.0)
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, cfg.packing,
            cfg.weight_decay, cfg.seed) == (4, 4, True, 0.0, 42)
    assert TrainConfig.__dataclass_fields__["activation_checkpointing"].default is True  # the paper's; off on CPU
    assert not cfg.assistant_only_loss and not cfg.lora and cfg.hub_private_repo
    # TRL's --config: the recipe's train: section, then the flags over it; corpora arguments add to the recipe's
    (tmp_path / "r.yaml").write_text("seed: 7\ntrain:\n  condition: generated\n  learning_rate: 1.0e-5\n"
                                     "  corpora: [generated=x]\n")
    cfg = parse_train_args(["--config", str(tmp_path / "r.yaml"), "--learning-rate", "2e-5", "fauno=y", "out"])
    assert (cfg.condition, cfg.learning_rate, cfg.max_steps, cfg.corpora, cfg.seed, cfg.output_dir) == \
        ("generated", 2e-5, -1, ["generated=x", "fauno=y"], 7, "out")
    assert parse_train_args([str(tmp_path / "r.yaml"), "out"]).learning_rate == 1e-5  # RECIPE.yaml first: --config
    (tmp_path / "bad.yaml").write_text("lr: 1\n")
    with pytest.raises(InputError, match="unknown setting train.lr"):
        parse_train_args(["--config", str(tmp_path / "bad.yaml"), "x", "out"])


def test_train_config_on_cpu(tmp_path):
    args = TrainConfig(output_dir=str(tmp_path), push_to_hub=True, hub_model_id="user/m")
    assert args.use_cpu and not args.bf16 and not args.activation_checkpointing
    assert args.optim == "adamw_torch" and args.max_length == 8192 and args.packing
    assert args.learning_rate == 5e-6 and args.lr_scheduler_type == "cosine" and args.warmup_steps == 10
    assert args.hub_private_repo is True and args.hub_strategy == "checkpoint" and args.hub_token is None
    assert args.per_device_eval_batch_size == 4 and args.data_seed == 42 and args.disable_tqdm
    assert not tmp_path.joinpath("runs").exists() and TrainConfig().output_dir is None  # nothing made, no default


def test_templates_render_the_paper_format(tiny_chat_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_lm)
    golden = "<s>[|Umano|] Ciao\n[|Assistente|] Ciao! Come posso aiutarti?\n[|Umano|] Grazie\n[|Assistente|] Prego.\n"
    training, inference, stops = templates(TrainConfig(), tok.eos_token)
    assert inference == chat_template("it") and "{% generation %}" in training and stops == ["[|Umano|]"]
    for template in (training, inference):
        tok.chat_template = template
        assert tok.apply_chat_template(MSGS, tokenize=False) == golden
    training, inference, stops = templates(TrainConfig(assistant_only_loss=True), tok.eos_token)
    tok.chat_template = training
    assert tok.apply_chat_template(MSGS, tokenize=False) == golden.replace(".\n", ".\n</s>").replace("?\n", "?\n</s>")
    assert stops == ["[|Umano|]", "</s>"]
    _, inference, _ = templates(TrainConfig(fauno_tags=True), tok.eos_token)
    tok.chat_template = inference
    assert tok.apply_chat_template(MSGS[:1], tokenize=False, add_generation_prompt=True) == "<s>[|Umano|] Ciao\n[|AI|] "


def test_assistant_mask_marks_only_replies(tiny_chat_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_lm)
    tok.chat_template = templates(TrainConfig(assistant_only_loss=True), tok.eos_token)[0]
    out = tok.apply_chat_template(MSGS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = tok.decode([i for i, m in zip(ids, mask) if m])
    # byte-level BPE glues the space after the tag to the reply's first token, so that token is in the loss too
    assert masked == " Ciao! Come posso aiutarti?\n</s> Prego.\n</s>"
    assert tok.decode([i for i, m in zip(ids, mask) if not m]) == (
        "<s>[|Umano|] Ciao\n[|Assistente|][|Umano|] Grazie\n[|Assistente|]")


def test_multi_gpu_configs_load():
    import json

    from accelerate.commands.config.config_args import load_config_from_file

    root = ROOT / "configs" / "accelerate"
    zero1 = load_config_from_file(str(root / "zero1.yaml"))
    assert zero1.distributed_type == "DEEPSPEED" and zero1.deepspeed_config["zero_stage"] == 1
    assert load_config_from_file(str(root / "multi_gpu.yaml")).distributed_type == "MULTI_GPU"
    ds = json.loads((root / "ds_zero1.json").read_text())
    assert ds["zero_optimization"]["stage"] == 1 and ds["train_micro_batch_size_per_gpu"] == "auto"



def test_the_papers_recipe_trains_without_the_generators_variables(monkeypatch, tmp_path):
    """`train --config configs/cerbero-7b.yaml` reads only the train section: ${TGI_URL} elsewhere is no error,
    while a variable the train section itself names still is."""
    from pathlib import Path

    import yaml

    from cerbero_hf.errors import InputError

    monkeypatch.delenv("TGI_URL", raising=False)
    recipe = Path(__file__).resolve().parents[3] / "configs" / "cerbero-7b.yaml"
    cfg = parse_train_args(["--config", str(recipe), "fauno=x", "out"])
    assert cfg.model == yaml.safe_load(recipe.read_text())["train"]["model"]
    monkeypatch.delenv("NO_SUCH_MODEL_VAR", raising=False)
    (tmp_path / "r.yaml").write_text("generate:\n  endpoint: ${TGI_URL}\ntrain:\n  model: ${NO_SUCH_MODEL_VAR}\n")
    with pytest.raises(InputError, match="NO_SUCH_MODEL_VAR"):
        parse_train_args(["--config", str(tmp_path / "r.yaml"), "fauno=x", "out"])
