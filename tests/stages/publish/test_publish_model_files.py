"""Which files ``publish --repo-type model`` uploads: the model, never the training state (``checkpoint-*/`` with
``optimizer.pt`` and ``rng_state.pth``) unless asked; a LoRA output is published as an adapter with a one-line
hint to the merged model. Against the Hub emulator, in-process (the endpoint and token passed explicitly)."""

from __future__ import annotations

import json
import shutil

import pytest

from cerbero_hf.errors import InputError
from cerbero_hf.stages.publish.hub import local_files, publish, publish_model
from cerbero_hf.stages.publish.stage import PublishConfig

STATE = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin",
         "model.safetensors", "config.json"]


@pytest.fixture(autouse=True)
def no_xet(monkeypatch):
    """huggingface_hub read HF_HUB_DISABLE_XET at import; the emulator speaks plain LFS."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)


def _trained(folder, tiny_chat_lm):
    """A train output: the saved model plus checkpoint-2/ as transformers' Trainer leaves it."""
    shutil.copytree(tiny_chat_lm, folder)
    ckpt = folder / "checkpoint-2"
    ckpt.mkdir()
    for name in STATE:
        (ckpt / name).write_bytes(b"state of " + name.encode())
    (folder / "rng_state.pth").write_bytes(b"a stray copy at the top")
    return folder


def _kw(hub_env):
    return {"endpoint": hub_env["HF_ENDPOINT"], "token": hub_env["HF_TOKEN"], "backoff": 0.05}


def test_training_state_stays_home_unless_asked(hub_emulator, hub_env, tiny_chat_lm, tmp_path):
    folder = _trained(tmp_path / "model", tiny_chat_lm)
    assert "checkpoint-2/optimizer.pt" in local_files(folder)  # the generic listing still sees everything

    publish(folder, "user/state-kept", "model", include_training_state=True, **_kw(hub_env))
    files = set(hub_emulator.files("model", "user/state-kept"))
    assert {"checkpoint-2/optimizer.pt", "checkpoint-2/rng_state.pth", "rng_state.pth"} <= files

    result = publish_model(folder, "user/state-kept", **_kw(hub_env))  # the default: the model only
    files = set(hub_emulator.files("model", "user/state-kept"))
    assert not {f for f in files if f.startswith("checkpoint-") or f == "rng_state.pth"}, files
    assert {"model.safetensors", "config.json"} <= files
    assert {f.path for f in result.files if f.status == "deleted"} >= {"checkpoint-2/optimizer.pt",
                                                                       "checkpoint-2/rng_state.pth"}
    assert result.notes == []


def test_the_option_is_a_publish_setting():
    assert PublishConfig().include_training_state is False
    assert PublishConfig(include_training_state=True).include_training_state is True


def test_a_lora_output_is_published_as_an_adapter_with_a_hint(hub_emulator, hub_env, tmp_path):
    lora = tmp_path / "model"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "base/m"}))
    (lora / "adapter_model.safetensors").write_bytes(b"lora weights")
    (lora / "README.md").write_text("---\ntags:\n- cerbero-hf\n---\n# adapter\n")
    result = publish(lora, "user/lora", "model", **_kw(hub_env))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(hub_emulator.files("model", "user/lora"))
    assert len(result.notes) == 1 and "\n" not in result.notes[0]
    assert "LoRA adapter" in result.notes[0] and "--merge-lora" in result.notes[0] and "base/m" in result.notes[0]
    (tmp_path / "model-merged").mkdir()
    (tmp_path / "model-merged" / "config.json").write_text("{}")
    result = publish(lora, "user/lora", "model", **_kw(hub_env))
    assert str(tmp_path / "model-merged") in result.notes[0]


def test_a_folder_that_is_no_model_is_still_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="config.json .*adapter_config.json"):
        publish_model(tmp_path / "x", "user/x")
