"""The ``score`` and ``filter`` stages: configs checked at construction, the model from the language pack,
and both corpora scored and filtered separately through ``run_score`` / ``run_filter``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cerbero_hf.config import from_dict
from cerbero_hf.errors import InputError
from cerbero_hf.languages import load_language
from cerbero_hf.schema import get_meta, make_row
from cerbero_hf.stages import get_stage
from cerbero_hf.stages.base import Context, Result, output
from cerbero_hf.stages.quality.stage import (
    FilterConfig,
    FilterResult,
    ScoreConfig,
    ScoreResult,
    resolve_model,
    run_filter,
    run_score,
)
from cerbero_hf.tiny_models import italian_sentences

UNSCORABLE = ""  # an empty message: no token to score, so it fails the filter ([UNK] is scored)


@dataclass
class GeneratedCorpus(Result):
    """What the score stage reads of the generate stage's result: the ``generated`` folder."""

    generated: str | None = output()


@dataclass
class RefinedCorpus(Result):
    """What the score stage reads of the refine stage's result: the ``refined`` folder."""

    refined: str | None = output()


def _pack(tmp_path: Path, mlm: str) -> Path:
    data = dataclasses.asdict(load_language("it"))
    data.update(code="xx", mlm=mlm)
    path = tmp_path / f"pack-{len(mlm)}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _corpus(path: Path, offset: int) -> Path:
    s = italian_sentences(40)
    rows = []
    for i in range(6):
        msgs = [{"role": "user", "content": s[(i + offset) % 40]},
                {"role": "assistant", "content": s[(i + offset + 7) % 40]},
                {"role": "user", "content": UNSCORABLE if i % 2 else s[(i + offset + 14) % 40]},
                {"role": "assistant", "content": s[(i + offset + 21) % 40]}]
        rows.append(make_row(f"c{offset}-{i}", msgs, source="test"))
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_configs_check_their_values():
    with pytest.raises(InputError, match=r"score\.variant must be pll or word_l2r, got 'x'"):
        ScoreConfig(variant="x")
    with pytest.raises(InputError, match=r"score\.batch_tokens must be >= 1"):
        ScoreConfig(batch_tokens=0)
    with pytest.raises(InputError, match=r"score\.chunk_rows must be >= 1"):
        ScoreConfig(chunk_rows=0)
    with pytest.raises(InputError, match=r"filter\.max_nll must be > 0, got 0"):
        FilterConfig(max_nll=0)
    with pytest.raises(InputError, match=r"filter\.policy must be truncate, drop_conversation or drop_message"):
        FilterConfig(policy="cut")
    with pytest.raises(InputError, match=r"unknown setting filter\.max_nl"):
        from_dict(FilterConfig, {"max_nl": 1.0})
    with pytest.raises(InputError, match=r"score\.batch_tokens must be an integer"):
        from_dict(ScoreConfig, {"batch_tokens": "many"})
    assert from_dict(ScoreConfig, {"variant": "word_l2r"}, defaults={"language": "xx.yaml", "seed": 1}) == \
        ScoreConfig(variant="word_l2r", language="xx.yaml")  # the recipe's top-level language fills the section's


def test_the_model_defaults_to_the_language_pack(tmp_path):
    assert ScoreConfig().model is None
    assert resolve_model(ScoreConfig()) == load_language("it").mlm  # no model is loaded to resolve it
    assert resolve_model(ScoreConfig(language=str(_pack(tmp_path, "some/mlm")))) == "some/mlm"
    assert resolve_model(ScoreConfig(model="mine", language=str(_pack(tmp_path, "some/mlm")))) == "mine"
    with pytest.raises(InputError, match="names no masked LM"):
        resolve_model(ScoreConfig(language=str(_pack(tmp_path, ""))))


def test_registry_entries():
    score, flt = get_stage("score"), get_stage("filter")
    assert (score.config, score.result, score.inputs, score.any_of, score.folder) == \
        (ScoreConfig, ScoreResult, ("generate", "refine"), True, "scored")
    assert (flt.config, flt.result, flt.inputs, flt.folder) == (FilterConfig, FilterResult, ("score",), "filtered")


def test_score_then_filter_each_corpus_separately(tmp_path, tiny_mlm):
    """The model comes from the pack, both corpora are scored and filtered into their own folders, and the
    filtered card names the variant that scored the corpus (read from the rows, not the default)."""
    inputs = {"generate": GeneratedCorpus(generated=str(_corpus(tmp_path / "gen.jsonl", 0))),
              "refine": RefinedCorpus(refined=str(_corpus(tmp_path / "ref.jsonl", 3)))}
    config = ScoreConfig(variant="word_l2r", device="cpu", chunk_rows=4, language=str(_pack(tmp_path, str(tiny_mlm))))
    scored = run_score(config, Context(output=tmp_path / "scored", inputs=inputs))
    assert scored.generated == str(tmp_path / "scored" / "generated")
    assert scored.refined == str(tmp_path / "scored" / "refined")
    assert scored.generated_messages == scored.refined_messages == 21  # 24, less 3 unscorable
    assert scored.generated_mean_nll != scored.refined_mean_nll
    assert set(scored.outputs()) == {"generated", "refined"}

    filtered = run_filter(FilterConfig(max_nll=6.5), Context(output=tmp_path / "filtered", inputs={"score": scored}))
    assert set(filtered.counts()) == {"generated_kept", "generated_rejected", "refined_kept", "refined_rejected"}
    assert filtered.generated_kept and filtered.generated_rejected >= 3  # at least the 3 unscorable turns fail
    import datasets

    for name in ("generated", "refined"):
        kept = datasets.load_dataset(str(tmp_path / "filtered" / name), split="train")
        rejected = datasets.load_dataset(str(tmp_path / "filtered" / name), "rejected", split="train")
        assert (len(kept), len(rejected)) == (getattr(filtered, f"{name}_kept"), getattr(filtered, f"{name}_rejected"))
        assert sum(m["content"] == UNSCORABLE for r in rejected for m in r["messages"]) == 3
        assert {r["id"].split("-")[0] for r in kept} == {"c0" if name == "generated" else "c3"}
        assert all(get_meta(r)["nll_model"] == str(tiny_mlm) for r in kept)
        for folder in ("scored", "filtered"):
            card = (tmp_path / folder / name / "README.md").read_text()
            assert "variant `word_l2r`" in card and "variant `pll`" not in card


def test_one_corpus_and_missing_inputs(tmp_path, tiny_mlm):
    inputs = {"refine": RefinedCorpus(refined=str(_corpus(tmp_path / "ref.jsonl", 0)))}
    scored = run_score(ScoreConfig(model=str(tiny_mlm), device="cpu"), Context(output=tmp_path / "s", inputs=inputs))
    assert scored.generated is None and "generated_messages" not in scored.counts()
    assert scored.refined_messages == 21 and not (tmp_path / "s" / "generated").exists()
    filtered = run_filter(FilterConfig(max_nll=6.5), Context(output=tmp_path / "f", inputs={"score": scored}))
    assert filtered.generated is None and filtered.refined == str(tmp_path / "f" / "refined")
    with pytest.raises(InputError, match="found no corpus: enable 'generate' or 'refine'"):
        run_score(ScoreConfig(model=str(tiny_mlm)), Context(output=tmp_path / "x"))
    with pytest.raises(InputError, match="needs the output of 'score'"):
        run_filter(FilterConfig(), Context(output=tmp_path / "y"))
