"""What the cards say: no local paths (models and sources by Hub id or by folder name), no unexpanded ``${VAR}``,
an example row that is valid JSON down to its ``meta`` string, ``base_model`` when the base is a Hub id.

Cards are rendered the way a run renders them: a light recipe run (seeds + refine, whose working cards name their
sources) and the publish stage to a local folder (dataset cards with models, recipe settings and an example row).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import ROOT

from cerbero_hf.recipe import STAGES, parse_recipe, run_recipe
from cerbero_hf.stages.base import Context

DATA = ROOT / "cerbero_hf" / "data"


def readmes(root: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(root.rglob("README.md"))}


def assert_public(cards: dict[Path, str], local: Path) -> None:
    assert cards
    for path, text in cards.items():
        assert str(local) not in text, f"{path} names a local path"
        assert str(ROOT) not in text, f"{path} names a local path"
        assert "${" not in text, f"{path} has an unexpanded variable"


def test_working_cards_of_a_light_run_name_sources_by_file_name(tmp_path):
    sources = tmp_path / "my data"
    sources.mkdir()
    for name in ("oasst_sample_it.jsonl", "fauno_sample.jsonl"):
        shutil.copy(DATA / name, sources / name)
    off = {s: {"enabled": False} for s in STAGES}
    recipe = parse_recipe({**off, "output_dir": str(tmp_path / "run"),
                           "seeds": {"input": str(sources / "oasst_sample_it.jsonl")},
                           "refine": {"inputs": [str(sources / "fauno_sample.jsonl")], "license": "apache-2.0"}})
    run_recipe(recipe)
    cards = readmes(tmp_path / "run")
    assert set(p.parent.name for p in cards) == {"seeds", "refined"}
    assert_public(cards, tmp_path)
    assert "`oasst_sample_it.jsonl`" in cards[tmp_path / "run" / "seeds" / "README.md"]


def _corpus(path: Path, source: str, n: int, meta: dict) -> str:
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"{source}{i}", [{"role": "user", "content": f"Domanda {i}? " + "parole " * 80},
                                      {"role": "assistant", "content": f"Risposta {i}."}], source, meta)
            for i in range(n)]
    return str(save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())}))


def test_published_dataset_cards_are_public_and_their_example_row_is_json(tmp_path):
    from cerbero_hf.stages.generate.stage import GenerateConfig
    from cerbero_hf.stages.publish.stage import PublishConfig, run_publish
    from cerbero_hf.stages.quality.stage import FilterConfig, FilterResult, ScoreConfig
    from cerbero_hf.stages.refine.stage import RefineConfig, RefineResult

    models = tmp_path / "models"
    for name in ("generator", "embedder", "mlm"):
        (models / name).mkdir(parents=True)
    meta = {"nll": [5.87, 6.11], "nll_model": str(models / "mlm"), "embedder": str(models / "embedder"),
            "note": "x" * 2000}
    filtered = FilterResult(generated_kept=3, generated_rejected=1, refined_kept=3, refined_rejected=0,
                            generated=_corpus(tmp_path / "filtered" / "generated", "gen", 3, meta),
                            refined=_corpus(tmp_path / "filtered" / "refined", "fauno", 3, meta))
    inputs = {"filter": filtered, "refine": RefineResult(input=4, kept=3, refined=filtered.refined)}
    configs = {"generate": GenerateConfig(model=str(models / "generator"), embedder=str(models / "embedder")),
               "score": ScoreConfig(model=str(models / "mlm")), "filter": FilterConfig(max_nll=6.5),
               "refine": RefineConfig(inputs=["${DEMO_DATA}/fauno_sample.jsonl", str(tmp_path / "in.jsonl")],
                                      license="apache-2.0")}
    config = PublishConfig(local_dir=str(tmp_path / "hub"), corpus_name="chat", seed=7)
    run_publish(config, Context(output=tmp_path / "publish", inputs=inputs, configs=configs))
    cards = readmes(tmp_path / "hub" / "datasets")
    assert len(cards) == 2
    assert_public(cards, tmp_path)
    generated = cards[tmp_path / "hub" / "datasets" / "chat-generated" / "README.md"]
    for role, name in (("generator", "generator"), ("embedder", "embedder"), ("mlm", "mlm")):
        assert f"| {role} | `{name}` |" in generated  # the folder name, not the path
    for text in cards.values():
        block = re.search(r"```json\n(.*?)\n```", text, flags=re.S)
        assert block, "the card shows an example row"
        row = json.loads(block.group(1))
        inner = json.loads(row["meta"])  # the meta string is JSON too: shortened inside, not cut
        assert inner["nll"] == [5.87, 6.11] and inner["nll_model"] == "mlm"
        assert inner["note"].endswith("…") and len(inner["note"]) < 400
        assert row["messages"][0]["content"].endswith("…")


def test_model_card_names_a_hub_base_model():
    from cerbero_hf.stages.train.model_card import build_model_card

    common = dict(model_name="m", corpora=[], condition="full", seed=1, recipe={}, assistant_only_loss=True,
                  stop_strings=["</s>"], user_tag="[|Umano|]", assistant_tag="[|Assistente|]")
    card = build_model_card(base_model="mistralai/Mistral-7B-v0.1", **common)
    assert card.data.base_model == "mistralai/Mistral-7B-v0.1"
    local = build_model_card(base_model="generator", **common)
    assert local.data.base_model is None and "`generator`" in local.text
