"""Model cards: rendering from the template and merging evaluation results (paper §4, §4.2)."""

from huggingface_hub import ModelCard
from huggingface_hub.utils import validate_repo_id

from cerbero_hf.stages.train.model_card import (
    EVAL_END,
    EVAL_START,
    NO_RESULTS,
    build_model_card,
    public_id,
    update_eval_results,
)


def _card(**kw):
    args = dict(model_name="cerbero-tiny", base_model="mistralai/Mistral-7B-v0.1", repo_id="user/cerbero-tiny",
                corpora=[{"name": "fauno", "hub_id": "user/fauno-refined", "weight": 1.0, "rows": 12},
                         {"name": "/data/generated", "hub_id": None, "weight": 0.5, "rows": 7}],
                condition="full", seed=42, recipe={"learning_rate": 5e-6, "max_length": 8192, "lr_scheduler_type": "cosine"},
                assistant_only_loss=False, stop_strings=["[|Umano|]"], user_tag="[|Umano|]",
                assistant_tag="[|Assistente|]")
    args.update(kw)
    return build_model_card(**args)


def _outside_table(text):
    return text[:text.index(EVAL_START)], text[text.index(EVAL_END) + len(EVAL_END):]


def test_card_metadata_and_sections(tmp_path):
    _card().save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "mistralai/Mistral-7B-v0.1"
    assert card.data.datasets == ["user/fauno-refined", "generated"]  # a local corpus by its folder name
    assert card.data.language == ["it"] and card.data.license == "apache-2.0"
    assert "condition-full" in card.data.tags and not card.data.eval_results
    text = card.text
    assert "| learning_rate | 5e-06 |" in text and "| max_length | 8192 |" in text
    assert "| `/data/generated` | 0.5 | 7 |" in text and "seed 42" in text
    assert "full-conversation loss" in text
    assert 'AutoTokenizer.from_pretrained("user/cerbero-tiny")' in text and 'stop_strings=["[|Umano|]"]' in text
    assert "[|Umano|] First user message\n[|Assistente|] First reply" in text
    assert NO_RESULTS in text and "arXiv:2311.15698" in text


def test_assistant_only_card_states_its_loss(tmp_path):
    card = _card(assistant_only_loss=True, stop_strings=["[|Umano|]", "</s>"])
    assert "assistant-only loss" in card.text and '"[|Umano|]", "</s>"' in card.text


def test_card_with_results_has_model_index(tmp_path):
    card = _card(results={"squad_it": {"f1": 72.55, "exact_match": 55.6}}, dataset_ids={"squad_it": "crux82/squad_it"})
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    got = {(r.dataset_name, r.dataset_type, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert got == {("squad_it", "crux82/squad_it", "f1"): 72.55, ("squad_it", "crux82/squad_it", "exact_match"): 55.6}
    assert "| squad_it | `crux82/squad_it` | 72.55 | 55.6 |" in loaded.text


def test_update_eval_results_merges_and_keeps_the_rest(tmp_path):
    _card().save(tmp_path / "README.md")
    before = ModelCard.load(tmp_path / "README.md")
    update_eval_results(tmp_path, {"squad_it": {"f1": 70.1, "exact_match": 50.0}}, "cerbero-tiny",
                        {"squad_it": "crux82/squad_it"})
    update_eval_results(tmp_path / "README.md", {"ironita": {"macro_f1": 0.598}, "squad_it": {"f1": 72.55}},
                        "cerbero-tiny")
    after = ModelCard.load(tmp_path / "README.md")
    got = {(r.dataset_name, r.metric_type): (r.dataset_type, r.metric_value) for r in after.data.eval_results}
    assert got == {("squad_it", "f1"): ("crux82/squad_it", 72.55), ("squad_it", "exact_match"): ("crux82/squad_it", 50.0),
                   ("ironita", "macro_f1"): ("ironita", 0.598)}
    assert after.data.model_name == "cerbero-tiny"
    assert _outside_table(after.text) == _outside_table(before.text)  # the body is untouched
    assert after.data.base_model == before.data.base_model and after.data.tags == before.data.tags
    assert "| squad_it | `crux82/squad_it` | 72.55 | 50 | – |" in after.text
    assert "| ironita | `ironita` | – | – | 0.598 |" in after.text


def test_update_eval_results_on_a_foreign_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# Someone's model\n\nHand-written text.\n")
    update_eval_results(tmp_path, {"sentipolc": {"macro_f1": 0.46}}, "m")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license == "mit" and card.text.startswith("# Someone's model\n\nHand-written text.\n")
    assert "## Evaluation" in card.text and "| sentipolc | `sentipolc` | 0.46 |" in card.text


def test_public_id_names_models_and_corpora_without_local_paths(tmp_path):
    (tmp_path / "my base model").mkdir()
    (tmp_path / "chat.jsonl").write_text("{}\n")
    cases = {"mistralai/Mistral-7B-v0.1": "mistralai/Mistral-7B-v0.1",
             "/home/me/.cache/huggingface/hub/models--mistralai--Mistral-7B-v0.1/snapshots/0a1b2c": "mistralai/Mistral-7B-v0.1",
             "/srv/hub/models--gpt2/snapshots/0a1b2c/": "gpt2",
             "/srv/hub/datasets--user--chat/snapshots/0a1b2c/data/train.parquet": "user/chat",
             str(tmp_path / "my base model") + "/": "my-base-model", str(tmp_path / "chat.jsonl"): "chat",
             "generated": "generated"}
    for spec, name in cases.items():
        assert public_id(spec) == name, spec
        validate_repo_id(name)  # a name the Hub accepts in base_model / datasets


def test_card_metadata_is_what_the_hub_reads(tmp_path):
    card = _card(base_model=str(tmp_path / "bases" / "tiny-mistral"), adapter=True,
                 results={"squad_it": {"f1": 70.0}}, corpora=[
                     {"name": "fauno", "hub_id": "user/fauno-refined", "weight": 1.0, "rows": 12},
                     {"name": str(tmp_path / "filtered" / "generated"), "hub_id": None, "weight": 1.0, "rows": 7}])
    data = ModelCard(str(card)).data  # the README's text parsed the way huggingface_hub (and the Hub) read it
    assert data.base_model == "tiny-mistral" and data.datasets == ["user/fauno-refined", "generated"]
    assert isinstance(data.base_model, str) and all(isinstance(d, str) for d in data.datasets)
    for repo_id in (data.base_model, *data.datasets):
        validate_repo_id(repo_id)
    assert data.library_name == "peft" and data.model_name == "cerbero-tiny"
    assert data.to_dict()["model-index"][0]["name"] == "cerbero-tiny"
    assert "base_model: " + str(tmp_path) not in str(card)


def test_update_eval_results_keeps_the_model_name_of_our_card(tmp_path):
    _card().save(tmp_path / "README.md")
    update_eval_results(tmp_path, {"squad_it": {"f1": 70.1}}, "model-merged")  # the evaluated folder's name
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.model_name == "cerbero-tiny"
    assert card.data.to_dict()["model-index"][0]["name"] == "cerbero-tiny"
