"""What the cards say: no local paths (models and sources by Hub id or by folder name), no unexpanded ``${VAR}``,
an example row that is valid JSON down to its ``meta`` string (a generated corpus: a row with a generated message),
``base_model`` by Hub id or, for a local base, by its folder name.

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


def test_model_card_names_its_base_model_by_hub_id_or_folder_name(tmp_path):
    from huggingface_hub import ModelCard

    from cerbero_hf.stages.train.model_card import build_model_card

    common = dict(model_name="m", corpora=[], condition="full", seed=1, recipe={}, assistant_only_loss=True,
                  stop_strings=["</s>"], user_tag="[|Umano|]", assistant_tag="[|Assistente|]")
    card = build_model_card(base_model="mistralai/Mistral-7B-v0.1", **common)
    assert ModelCard(str(card)).data.base_model == "mistralai/Mistral-7B-v0.1"
    (tmp_path / "models" / "generator").mkdir(parents=True)
    for base in ("generator", str(tmp_path / "models" / "generator")):
        local = build_model_card(base_model=base, **common)
        assert ModelCard(str(local)).data.base_model == "generator" and "`generator`" in local.text
        assert str(tmp_path) not in str(local)


SELF_CHAT = ["Le montagne più alte stanno sulle Alpi occidentali.", "Il sale del mare viene dalle rocce.",
             "Domani pioverà forte su tutta la Toscana.", "Mi piace leggere romanzi gialli la sera.",
             "Il treno per Milano parte alle otto.", "Quante lingue si parlano in Svizzera?",
             "La pizza margherita nasce a Napoli.", "Il gatto dorme sul divano tutto il giorno."]


def test_generated_corpus_card_example_row_has_a_generated_message(tgi_server, tiny_embedder, tmp_path):
    """A real self-chat run, then the NLL cut: the first kept conversation is cut back to its seed turns (its first
    generated message fails); the card's example row is still one with a generated message."""
    from datasets import Dataset

    from cerbero_hf.cards import dataset_card
    from cerbero_hf.config import from_dict
    from cerbero_hf.io import load_table, save_hub_folder
    from cerbero_hf.schema import features, get_meta, make_row, update_meta
    from cerbero_hf.stages.generate.stage import GenerateConfig, run_generate
    from cerbero_hf.stages.quality.stage import FilterConfig, ScoreResult, run_filter
    from cerbero_hf.stages.seeds.stage import SeedsResult

    qa = [("Qual è la montagna più alta d'Italia?", "Il Monte Bianco, con circa 4800 metri."),
          ("Perché il mare è salato?", "Perché i fiumi portano sali minerali che si accumulano nel tempo.")]
    seeds = [make_row(f"oasst-{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "oasst",
                      {"origin": ["seed", "seed"]}) for i, (q, a) in enumerate(qa)]
    save_hub_folder(tmp_path / "seeds", {"default": Dataset.from_list(seeds, features=features())})
    config = from_dict(GenerateConfig, {"endpoint": tgi_server.url, "mode": "completion", "concurrency": 1,
                                        "embedder": str(tiny_embedder), "threshold": 1.0, "lengths": [4],
                                        "backoff": 0.01, "resume": False})
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: f"text:{SELF_CHAT[n % len(SELF_CHAT)]}"
    generated = run_generate(config, Context(output=tmp_path / "generated",
                                             inputs={"seeds": SeedsResult(seeds=str(tmp_path / "seeds"))}))
    assert generated.complete == 2
    rows = list(load_table(tmp_path / "generated"))
    assert [get_meta(r)["origin"] for r in rows] == [["seed", "seed", "generated", "generated"]] * 2
    # per-message NLL as the score stage records it: the first conversation's generated messages fail the cut
    scored = [{**r, "meta": update_meta(r, nll=[1.0, 1.0, 9.0, 9.0] if i == 0 else [1.0] * 4)}
              for i, r in enumerate(rows)]
    save_hub_folder(tmp_path / "scored", {"default": Dataset.from_list(scored, features=features())})
    filtered = run_filter(FilterConfig(max_nll=6.5), Context(output=tmp_path / "filtered", inputs={
        "score": ScoreResult(generated=str(tmp_path / "scored"))}))
    kept = list(load_table(filtered.generated))
    assert [get_meta(r)["origin"] for r in kept] == [["seed", "seed"], ["seed", "seed", "generated", "generated"]]

    card = dataset_card(filtered.generated, template="generated_corpus", save=False)
    row = json.loads(re.search(r"## Example row\n\n```json\n(.*?)\n```", card.text, flags=re.S).group(1))
    origin = json.loads(row["meta"])["origin"]
    assert "generated" in origin
    shown = [m["content"] for m, o in zip(row["messages"], origin) if o == "generated"]
    assert shown and all(text in SELF_CHAT for text in shown)  # what the generator wrote, in the card
