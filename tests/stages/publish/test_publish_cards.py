"""Dataset cards, card merge, retry classification and the dataset_scripts build recipes (no network)."""

from __future__ import annotations

import importlib.util
import inspect
import json

import pytest
import yaml
from conftest import ROOT

SCRIPTS = ROOT / "dataset_scripts"
PUBLISHED = ("generated_corpus", "refined_corpus", "training_mix")


def _folder(tmp_path, n_kept=3):
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row, rejected_features

    kept = [make_row(f"k{i}", [{"role": "user", "content": f"Domanda {i}"},
                               {"role": "assistant", "content": "x" * 400}], "generated", {}) for i in range(n_kept)]
    rej = [dict(make_row("r0", [{"role": "user", "content": "Ciao"}], "generated", {}), rule="similarity",
                reason="cosine 0.97 > 0.9")]
    return save_hub_folder(tmp_path / "corpus", {"default": Dataset.from_list(kept, features=features()),
                                                 "rejected": Dataset.from_list(rej, features=rejected_features())})


@pytest.mark.parametrize("name", PUBLISHED)
def test_build_recipe_card_renders_from_its_template(name, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from cerbero_hf.cards import dataset_card

    recipe = yaml.safe_load((SCRIPTS / name / "build.yaml").read_text())
    assert recipe["dataset"] == name and recipe["steps"] and recipe["publish"]["run"].startswith("cerbero-hf publish")
    card_args = dict(recipe["card"])
    assert set(card_args) <= set(inspect.signature(dataset_card).parameters)
    folder = _folder(tmp_path)
    card_args["task_categories"] = tuple(card_args["task_categories"])
    card_args["tags"] = tuple(card_args["tags"])
    dataset_card(folder, repo_id=f"user/{name}", recipe={"endpoint": {"url": "http://tgi", "api_key": "sk-secret",
                                                                       "hf_token": "hf_secret"}},
                 stage_counts={"seeds": 5, "generated": 4, "rejected by similarity": 1},
                 nll=[0.5, 1.5, 2.5], **card_args)
    text = (folder / "README.md").read_text()
    data = DatasetCard(text).data.to_dict()
    assert data["language"] == ["it"] and data["license"] == recipe["card"]["license"]
    assert {"synthetic", "cerbero-hf"} <= set(data["tags"]) and data["size_categories"] == ["n<1K"]
    assert data["cerbero_hf"]["rows"] == {"default": 3, "rejected": 1}
    assert f'load_dataset("user/{name}", "rejected", split="train")' in text
    assert "arXiv:2311.15698" in text and "| rejected by similarity | 1 |" in text
    assert "`recipe.endpoint.url` | `http://tgi`" in text
    assert "secret" not in text  # api_key / token keys are dropped
    assert "](images/nll_histogram.png)" in text and (folder / "images" / "nll_histogram.png").stat().st_size > 1000
    assert '"id": "k0"' in text and "x" * 300 + "…" in text  # example row, long text shortened
    # The card keeps the folder loadable with both configs.
    assert list(load_dataset(str(folder), split="train")["id"]) == ["k0", "k1", "k2"]
    assert list(load_dataset(str(folder), "rejected", split="train")["rule"]) == ["similarity"]


def test_training_mix_build_keeps_every_input_row(tmp_path):
    from datasets import Dataset, load_dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    def corpus(name, n, broken=()):
        rows = [make_row(f"{name}{i}", [{"role": "user", "content": f"q{i}"}] +
                         ([] if i in broken else [{"role": "assistant", "content": f"a{i}"}]), name, {})
                for i in range(n)]
        return save_hub_folder(tmp_path / name, {"default": Dataset.from_list(rows, features=features())})

    spec = importlib.util.spec_from_file_location("mix_build", SCRIPTS / "training_mix" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "mix"
    mod.build([f"fauno={corpus('fauno', 4, broken={2})}", f"generated={corpus('generated', 3)}"], out, seed=7,
              repo_id="user/mix")
    kept = load_dataset(str(out), split="train").to_list()
    rejected = load_dataset(str(out), "rejected", split="train").to_list()
    kept_ids, rejected_ids = [r["id"] for r in kept], [r["id"] for r in rejected]
    assert sorted(kept_ids + rejected_ids) == sorted([f"fauno{i}" for i in range(4)] +
                                                        [f"generated{i}" for i in range(3)])
    assert rejected_ids == ["fauno2"] and rejected[0]["reason"] == "no assistant message"
    assert kept_ids != sorted(kept_ids)  # shuffled with the recorded seed
    assert json.loads(kept[0]["meta"]) == {"mix_seed": 7}
    assert "| training mix | 6 |" in (out / "README.md").read_text()


def test_merge_card_user_edits_win_except_owned_keys():
    from huggingface_hub import RepoCard

    from cerbero_hf.stages.publish.hub import merge_card

    ours = ("---\nlicense: cc-by-nc-4.0\ntags: [synthetic, cerbero-hf]\nsize_categories: [1K<n<10K]\n"
            "configs:\n- config_name: default\n  data_files: data/*\ncerbero_hf: {rows: {default: 2000}}\n---\n"
            "# New body\n")
    theirs = ("---\nlicense: cc-by-4.0\ntags: [cerbero-hf, my-tag]\nsize_categories: [n<1K]\nannotations_creators: "
              "[machine-generated]\nconfigs:\n- config_name: old\n  data_files: old/*\ncerbero_hf: {rows: {old: 5}}\n"
              "---\n# Old body\n")
    merged = RepoCard(merge_card(ours, theirs, "dataset"))
    data = merged.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["annotations_creators"] == ["machine-generated"]
    assert data["tags"] == ["synthetic", "cerbero-hf", "my-tag"]
    assert data["size_categories"] == ["1K<n<10K"] and data["cerbero_hf"] == {"rows": {"default": 2000}}
    assert [c["config_name"] for c in data["configs"]] == ["default"]
    assert merged.text.strip() == "# New body"


def test_is_transient_classifies_hub_errors():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from cerbero_hf.stages.publish.hub import is_transient, with_retries

    def http_error(status):
        response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/api/x"))
        return HfHubHTTPError(f"{status} error", response=response)

    assert is_transient(http_error(503)) and is_transient(http_error(429))
    assert not is_transient(http_error(404)) and not is_transient(http_error(401))
    try:
        raise RuntimeError("Error while uploading 'x'") from httpx2.ConnectError("refused")
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("bad"))

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise http_error(502)
        return "ok"

    assert with_retries(flaky, retries=3, backoff=0.001) == ("ok", 3)
    calls.clear()
    with pytest.raises(HfHubHTTPError):
        with_retries(lambda: (calls.append(1), (_ for _ in ()).throw(http_error(404)))[1], retries=3, backoff=0.001)
    assert len(calls) == 1  # a permanent error is not retried
