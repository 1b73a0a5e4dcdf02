"""SFT on a tiny Mistral with TRL: full and LoRA runs, reload, merge, resume, assistant-only labels, Hub push.

Every run is a few steps on CPU with short sequences; the base model is a copy of the session's tiny
chat LM, so no test can change the shared fixture.
"""

import json
import shutil
import subprocess
import sys

import torch
from conftest import run_cli
from fixtures_train import train_config

from cerbero_hf.chat_template import chat_template
from cerbero_hf.stages.train.config import TrainConfig
from cerbero_hf.stages.train.trainer import MANIFEST, templates, train

GOLDEN_PROMPT = "<s>[|Umano|] Ciao\n[|Assistente|] "




def _step_counter():
    from transformers import TrainerCallback

    class Count(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return Count()


def test_full_sft_reloads_generates_and_resumes(base_lm, corpora, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "full"
    res = train(train_config(base_lm, corpora, out, max_steps=3, eval_fraction=0.1))
    assert (res.steps, res.resumed_from, res.rows) == (3, None, 36) and res.tokens > 0 and res.eval_loss > 0
    assert (out / "chat_template.jinja").read_text() == chat_template("it")  # saved copy: inference template
    before, after = load_file(base_lm / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["data"]["seed"] == 42 and manifest["stop_strings"] == ["[|Umano|]"]
    assert [c["rows_used"] for c in manifest["data"]["corpora"]] == [24, 16]
    assert "full-conversation loss" in (out / "README.md").read_text()

    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    msgs = [{"role": "user", "content": "Ciao"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == GOLDEN_PROMPT
    inputs = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > inputs["input_ids"].shape[1]

    # An interruption after the step-2 checkpoint: the rerun continues from it, it does not start over.
    shutil.rmtree(out / "checkpoint-3")
    counter = _step_counter()
    res2 = train(train_config(base_lm, corpora, out, max_steps=5), callbacks=[counter])
    assert res2.resumed_from.endswith("checkpoint-2") and res2.steps == 5 and counter.steps == 3
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5]


def test_lora_merged_model_matches_adapter(base_lm, corpora, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    res = train(train_config(base_lm, corpora, out, max_steps=2, lora=True, lora_r=8, merge_lora=True, condition="generated"))
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert res.rows == 16 and res.merged == str(out) + "-merged"
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45]])
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_lm), out).eval()
    with torch.no_grad():
        adapter_logits = adapter(input_ids=ids).logits  # captured before any merge (merge_and_unload edits the base in place)
        with adapter.disable_adapter():
            base_logits = adapter(input_ids=ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(res.merged)(input_ids=ids).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-4  # the adapter learned something
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5)
    assert "merged into the base weights" in open(f"{res.merged}/README.md").read()
    assert open(f"{res.merged}/chat_template.jinja").read() == chat_template("it")


def test_assistant_only_loss_labels(base_lm, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    msgs = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Ciao! Come posso aiutarti?"},
            {"role": "user", "content": "Grazie"}, {"role": "assistant", "content": "Prego."}]
    rows = {}
    for only in (True, False):
        cfg = TrainConfig(model=str(base_lm), assistant_only_loss=only, packing=False, max_length=128,
                          output_dir=str(tmp_path / str(only)))
        tok = AutoTokenizer.from_pretrained(base_lm)
        tok.chat_template = templates(cfg, tok.eos_token)[0]
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(base_lm), args=cfg,
                             train_dataset=Dataset.from_list([{"messages": msgs}]), processing_class=tok)
        rows[only] = trainer.train_dataset[0]
    ids, labels = rows[True]["input_ids"], rows[True]["labels"]
    assert tok.decode([i for i, lab in zip(ids, labels) if lab != -100]) == " Ciao! Come posso aiutarti?\n</s> Prego.\n</s>"
    assert rows[False]["labels"] == rows[False]["input_ids"]  # the paper's default: full conversations
    assert tok.decode(rows[False]["input_ids"]) == ("<s>[|Umano|] Ciao\n[|Assistente|] Ciao! Come posso aiutarti?\n"
                                                 "[|Umano|] Grazie\n[|Assistente|] Prego.\n")


def test_cli_pushes_checkpoints_and_model_to_the_hub(hub_emulator, hub_env, base_lm, corpora, tmp_path):
    """``cerbero-hf train --push-to-hub`` in a fresh process, then ``from_pretrained`` from the Hub in it."""
    repo = "user/cerbero-tiny-push"
    hub_emulator.reset_log()
    argv = ["train", f"fauno={corpora['fauno']}", f"generated={corpora['generated']}", str(tmp_path / "out"),
            "--model", str(base_lm), "--push-to-hub", "--hub-model-id", repo, "--max-steps", "4", "--save-steps", "2",
            "--max-length", "128", "--per-device-train-batch-size", "4", "--gradient-accumulation-steps", "1",
            "--assistant-only-loss", "--warmup-steps", "0", "--learning-rate", "0.001", "--eval-fraction", "0"]
    # the same entry point as the console script; the reload after it downloads into an empty HF_HOME
    code = (f"from cerbero_hf.cli import main\nmain({argv!r})\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"tok = AutoTokenizer.from_pretrained({repo!r}); m = AutoModelForCausalLM.from_pretrained({repo!r})\n"
            "print('RELOADED', type(m).__name__, repr(tok.apply_chat_template([{'role': 'user', 'content': 'Ciao'}], "
            "tokenize=False, add_generation_prompt=True)))")
    r = subprocess.run([sys.executable, "-c", code], env=hub_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    token = hub_env["HF_TOKEN"]
    assert token not in r.stdout + r.stderr
    assert "tokens (this run)" in r.stdout and repo in r.stdout and "assistant-only" in r.stdout
    assert f"RELOADED MistralForCausalLM {GOLDEN_PROMPT!r}" in r.stdout
    assert hub_emulator.repos[("models", repo)].private  # private by default

    summaries = [json.loads(q.body.splitlines()[0])["value"]["summary"]
                 for q in hub_emulator.requests("POST", rf"^/api/models/{repo}/commit/") if q.status == 200]
    assert "Training in progress, step 2" in summaries and summaries[-1] == "End of training"
    files = hub_emulator.files("model", repo)
    for path in ("model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md",
                 "last-checkpoint/trainer_state.json", "last-checkpoint/model.safetensors"):
        assert path in files
    assert not any(token.encode() in data for data in files.values())
    card = files["README.md"].decode()
    assert "assistant-only loss" in card and 'stop_strings=["[|Umano|]", "</s>"]' in card


def test_cli_bad_input_is_one_line(cli_env, tmp_path, corpora):
    r = run_cli(["train", f"fauno={tmp_path / 'missing'}", tmp_path / "out"], env=cli_env)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(["train", f"generated={corpora['generated']}", tmp_path / "out", "--condition", "fauno"], env=cli_env)
    assert r.returncode == 2 and "needs a corpus named fauno" in r.stderr


def test_stage_trains_on_the_filter_outputs_into_its_folder(base_lm, corpora, tmp_path):
    """The recipe runner's path: ``STAGE.config.from_recipe`` then ``STAGE.run`` with the filter's typed result."""
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.quality.stage import FilterResult
    from cerbero_hf.stages.train.stage import STAGE

    section = {"model": str(base_lm), "max_steps": 1, "max_length": 128, "warmup_steps": 0, "eval_fraction": 0,
               "condition": "fauno", "save_steps": 1000}
    config = STAGE.config.from_recipe(section, file="r.yaml", defaults={"language": "it", "seed": 7}, enabled=True)
    ctx = Context(output=tmp_path / "model", inputs={
        "filter": FilterResult(generated=corpora["generated"], refined=corpora["fauno"])})
    res = STAGE.run(config, ctx)
    assert (res.steps, res.rows, res.model, res.merged) == (1, 24, str(tmp_path / "model"), None)
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert [c["name"] for c in manifest["data"]["corpora"]] == ["fauno"] and manifest["config"]["seed"] == 7
    assert config.output_dir is None and not config.corpora  # the recipe's config is left as it was
