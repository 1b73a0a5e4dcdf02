"""Which files ``publish`` uploads: the files the stage wrote (plus ``--include``), never what a symbolic link
points to outside the folder, never a ``*.parquet`` that is not parquet. Against the Hub emulator, in-process
(endpoint and token passed explicitly) and, for the one-line errors and ``--include``, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from cerbero_hf.errors import InputError
from cerbero_hf.stages.publish.hub import local_files, publish

SECRET = b"outside the folder: must never reach the Hub\n"
METRIC = ROOT / "dataset_scripts" / "mlm_nll"


@pytest.fixture(autouse=True)
def no_xet(monkeypatch):
    """huggingface_hub read HF_HUB_DISABLE_XET at import; the emulator speaks plain LFS."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)


def _kw(hub_env):
    return {"endpoint": hub_env["HF_ENDPOINT"], "token": hub_env["HF_TOKEN"], "backoff": 0.05, "retries": 0}


def _outside(tmp_path: Path) -> Path:
    """A file outside every folder that is published."""
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(SECRET)
    return secret


def _corpus(path: Path, repo_id: str) -> Path:
    """A Hub-layout corpus as the stages write it: default + rejected configs, the card (with its histogram)."""
    from datasets import Dataset

    from cerbero_hf.cards import dataset_card
    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row, rejected_features

    kept = [make_row(f"k{i}", [{"role": "user", "content": f"Domanda {i}?"},
                               {"role": "assistant", "content": f"Risposta {i}."}], "generated", {})
            for i in range(3)]
    rejected = [dict(make_row("r0", [{"role": "user", "content": "Ciao"}], "generated", {}), rule="similarity",
                     reason="cosine 0.95 > 0.9")]
    save_hub_folder(path, {"default": Dataset.from_list(kept, features=features()),
                           "rejected": Dataset.from_list(rejected, features=rejected_features())})
    dataset_card(path, repo_id=repo_id, nll=[0.5, 1.5, 2.5])
    return path


def _stage_files(folder: Path) -> set[str]:
    """What the stages wrote into a corpus folder (before any stray file was added)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _model(path: Path, tiny_chat_lm: Path) -> Path:
    """A train output: the saved model plus the files the train and evaluate stages add next to it."""
    shutil.copytree(tiny_chat_lm, path)
    (path / "README.md").write_text("---\ntags:\n- cerbero-hf\n---\n# model\n")
    (path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    (path / "generation_config.json").write_text("{}")
    (path / "training_args.bin").write_bytes(b"trainer arguments")
    (path / "cerbero_train.json").write_text(json.dumps({"result": {"steps": 2}}))
    (path / "results.json").write_text(json.dumps({"model": "m", "tasks": {}}))
    return path


def _published(hub_emulator, repo_type: str, repo_id: str) -> set[str]:
    """The repo's files, but the ``.gitattributes`` the Hub writes when it creates a repo."""
    return set(hub_emulator.files(repo_type, repo_id)) - {".gitattributes"}


def _link(folder: Path, name: str, target: Path) -> Path:
    link = folder / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _nothing_sent(hub_emulator, repo_type: str, repo_id: str) -> None:
    """No repo was created, and the outside file's content is in no request."""
    assert (f"{repo_type}s", repo_id) not in hub_emulator.repos
    assert not [r.path for r in hub_emulator.log if SECRET in r.body]


@pytest.mark.parametrize("kind", ["dataset", "model"])
@pytest.mark.parametrize("name", ["leak.txt", "data/leak.parquet", "tokenizer.json", "data/train-00009.parquet"])
def test_a_link_out_of_the_folder_is_refused_and_nothing_is_uploaded(kind, name, hub_emulator, hub_env,
                                                                      tiny_chat_lm, tmp_path):
    repo = f"user/link-out-{kind}-{name.replace('/', '-').replace('.', '-')}"
    folder = _corpus(tmp_path / "f", repo) if kind == "dataset" else _model(tmp_path / "f", tiny_chat_lm)
    if (folder / name).exists():
        (folder / name).unlink()
    link = _link(folder, name, _outside(tmp_path))
    hub_emulator.reset_log()
    with pytest.raises(InputError) as err:
        publish(folder, repo, kind, **_kw(hub_env))
    message = str(err.value)
    assert "\n" not in message and str(link) in message and "outside the folder" in message
    assert hub_emulator.log == []  # refused before any request
    _nothing_sent(hub_emulator, kind, repo)


def test_a_folder_link_out_of_the_folder_is_refused(hub_emulator, hub_env, tmp_path):
    repo = "user/link-out-folder"
    folder = _corpus(tmp_path / "corpus", repo)
    _link(folder, "data/more", _outside(tmp_path).parent)
    with pytest.raises(InputError, match="data/more.*outside the folder"):
        publish(folder, repo, "dataset", **_kw(hub_env))
    assert ("datasets", repo) not in hub_emulator.repos


def test_the_cli_refuses_a_link_out_in_one_line_exit_2(hub_emulator, hub_env, tmp_path):
    repo = "user/link-out-cli"
    folder = _corpus(tmp_path / "corpus", repo)
    link = _link(folder, "leak.txt", _outside(tmp_path))
    out = run_cli(["publish", repo, folder], env=hub_env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines() == [out.stderr.strip()] and out.stderr.startswith(f"Error: file {link}: ")
    assert ("datasets", repo) not in hub_emulator.repos
    _nothing_sent(hub_emulator, "dataset", repo)


def test_a_link_inside_the_folder_is_published_as_a_copy_of_its_target(hub_emulator, hub_env, tiny_chat_lm,
                                                                        tmp_path):
    """A link whose target lies inside the folder is uploaded under the link's path with the target's content;
    the target itself only when it is one of the stage's files. A link back to a parent folder is walked once."""
    folder = _model(tmp_path / "model", tiny_chat_lm)
    (folder / "tok").mkdir()
    (folder / "tokenizer.json").rename(folder / "tok" / "tokenizer.json")
    _link(folder, "tokenizer.json", Path("tok") / "tokenizer.json")  # relative, as `ln -s` makes it
    _link(folder, "loop", Path("."))
    assert "tokenizer.json" in local_files(folder) and "loop/config.json" not in local_files(folder)
    publish(folder, "user/link-inside", "model", **_kw(hub_env))
    files = hub_emulator.files("model", "user/link-inside")
    assert files["tokenizer.json"] == (folder / "tok" / "tokenizer.json").read_bytes()
    assert "tok/tokenizer.json" not in files and not [p for p in files if p.startswith("loop/")]


def test_only_the_files_the_stages_wrote_are_published_with_a_dataset(hub_emulator, hub_env, tmp_path):
    repo = "user/strays-dataset"
    folder = _corpus(tmp_path / "corpus", repo)
    wrote = _stage_files(folder)
    assert {"README.md", "data/train-00000-of-00001.parquet", "rejected/train-00000-of-00001.parquet"} <= wrote
    (folder / "notes.txt").write_text("my notes")
    (folder / "x.parquet").write_bytes(b"not a parquet file")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "upload.json").write_text("{}")
    shutil.copy(folder / "data" / "train-00000-of-00001.parquet", folder / "old.parquet")  # a real parquet, stray
    publish(folder, repo, "dataset", **_kw(hub_env))
    assert _published(hub_emulator, "dataset", repo) == wrote

    publish(folder, repo, "dataset", include=("notes.txt", "*.md"), **_kw(hub_env))
    assert _published(hub_emulator, "dataset", repo) == wrote | {"notes.txt"}


def test_only_the_files_the_stages_wrote_are_published_with_a_model(hub_emulator, hub_env, tiny_chat_lm, tmp_path):
    folder = _model(tmp_path / "model", tiny_chat_lm)
    wrote = _stage_files(folder)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "cerbero_train.json", "results.json", "README.md"} <= wrote
    (folder / "notes.txt").write_text("my notes")
    (folder / "wandb").mkdir()
    (folder / "wandb" / "run.log").write_text("loss 1.0")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.safetensors").write_bytes(b"cached")
    (folder / "x.parquet").write_bytes(b"not a parquet file")
    publish(folder, "user/strays-model", "model", **_kw(hub_env))
    assert _published(hub_emulator, "model", "user/strays-model") == wrote

    publish(folder, "user/strays-model", "model", include=("wandb/",), **_kw(hub_env))
    assert _published(hub_emulator, "model", "user/strays-model") == wrote | {"wandb/run.log"}


def test_a_lora_adapter_keeps_its_files(hub_emulator, hub_env, tmp_path):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "b/m"}))
    (lora / "adapter_model.safetensors").write_bytes(b"lora weights")
    (lora / "README.md").write_text("---\ntags:\n- cerbero-hf\n---\n# adapter\n")
    (lora / "tokenizer.json").write_text("{}")
    (lora / "notes.txt").write_text("x")
    publish(lora, "user/strays-lora", "model", **_kw(hub_env))
    assert _published(hub_emulator, "model", "user/strays-lora") == {"adapter_config.json", "README.md",
                                                                    "adapter_model.safetensors", "tokenizer.json"}


def test_only_the_module_files_are_published_with_a_metric(hub_emulator, hub_env, tmp_path):
    folder = tmp_path / "mlm_nll"
    shutil.copytree(METRIC, folder)
    wrote = _stage_files(folder)
    (folder / "notes.txt").write_text("my notes")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "mlm_nll.cpython-311.pyc").write_bytes(b"bytecode")
    publish(folder, "strays/mlm_nll", "metric", **_kw(hub_env))
    assert _published(hub_emulator, "space", "strays/mlm_nll") == wrote


def test_a_parquet_file_that_is_not_parquet_is_refused(hub_emulator, hub_env, tmp_path):
    repo = "user/fake-parquet"
    folder = _corpus(tmp_path / "corpus", repo)
    fake = folder / "data" / "train-00000-of-00001.parquet"
    fake.write_bytes(b"PAR1 this is a text file, not parquet")
    with pytest.raises(InputError) as err:
        publish(folder, repo, "dataset", **_kw(hub_env))
    assert "\n" not in str(err.value) and str(fake) in str(err.value) and "parquet" in str(err.value)
    assert ("datasets", repo) not in hub_emulator.repos

    _corpus(folder, repo)  # written again: a real parquet file
    (folder / "x.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(InputError, match="x.parquet"):  # a stray one, included by the user
        publish(folder, repo, "dataset", include=("*.parquet",), **_kw(hub_env))
    assert ("datasets", repo) not in hub_emulator.repos


def test_the_cli_include_is_repeatable(hub_emulator, hub_env, tmp_path):
    repo = "user/include-cli"
    folder = _corpus(tmp_path / "corpus", repo)
    wrote = _stage_files(folder)
    (folder / "notes.txt").write_text("my notes")
    (folder / "extra").mkdir()
    (folder / "extra" / "a.json").write_text("{}")
    (folder / "other.txt").write_text("not included")
    out = run_cli(["publish", repo, folder, "--include", "notes.txt", "--include", "extra/*"], env=hub_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _published(hub_emulator, "dataset", repo) == wrote | {"notes.txt", "extra/a.json"}


@pytest.mark.parametrize("local", [True, False])
def test_the_publish_stage_refuses_a_link_out_of_a_corpus_it_stages(local, hub_emulator, hub_env, tmp_path):
    """The stage copies each corpus before its card is written: the copy must not turn a link out into a file."""
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.publish.stage import PublishConfig, run_publish
    from cerbero_hf.stages.quality.stage import FilterResult

    folder = _corpus(tmp_path / "filtered", "user/x")
    outside = _corpus(tmp_path / "elsewhere", "user/y") / "data" / "train-00000-of-00001.parquet"  # real rows
    link = _link(folder, "data/train-00009-of-00010.parquet", outside)
    config = (PublishConfig(local_dir=str(tmp_path / "hub"), corpus_name="stage-link") if local else
              PublishConfig(namespace="user", corpus_name="stage-link", endpoint=hub_env["HF_ENDPOINT"]))
    with pytest.raises(InputError) as err:
        run_publish(config, Context(output=tmp_path / "publish", inputs={"filter": FilterResult(generated=str(folder))}))
    assert "\n" not in str(err.value) and str(link) in str(err.value) and "outside the folder" in str(err.value)
    assert not [p for p in tmp_path.rglob("train-00009-of-00010.parquet") if not p.is_symlink()]
    assert ("datasets", "user/stage-link-generated") not in hub_emulator.repos
