"""The refine stage as one unit: RefineConfig checks, run_refine's typed result, the rule list driving the report."""

import json

import pytest
from conftest import ROOT
from datasets import Dataset, load_dataset

from cerbero_hf.config import from_dict
from cerbero_hf.errors import InputError
from cerbero_hf.schema import features, make_row
from cerbero_hf.stages import get_stage
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.refine.refiner import Refiner
from cerbero_hf.stages.refine.rules import (
    DuplicateMajority,
    EmptyConversation,
    Filter,
    ForeignLanguage,
    Formatter,
    LanguageCheck,
    TrailingUserTurns,
    TurnOrder,
    default_rules,
    report_names,
)
from cerbero_hf.stages.refine.stage import RefineConfig, RefineResult, run_refine

DATA = ROOT / "cerbero_hf" / "data"


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


@pytest.mark.parametrize("kwargs, needle", [
    ({"num_proc": 0}, "refine.num_proc must be >= 1, got 0"),
    ({"lang_action": "nope"}, "refine.lang_action must be flag, drop-message or drop-conversation, got 'nope'"),
    ({"inputs": []}, "refine.inputs must name at least one corpus"),
])
def test_config_checks_its_values_at_construction(kwargs, needle):
    with pytest.raises(InputError) as err:
        RefineConfig(**kwargs)
    assert needle in str(err.value) and err.value.column.startswith("refine.")


def test_config_from_a_recipe_section():
    cfg = from_dict(RefineConfig, {"inputs": ["a.jsonl", "b.jsonl"], "num_proc": "2"}, defaults={"language": "it",
                                                                                              "seed": 1})
    assert cfg.inputs == ["a.jsonl", "b.jsonl"] and cfg.num_proc == 2 and cfg.lang_action == "flag"
    with pytest.raises(InputError, match="unknown setting refine.lang"):
        from_dict(RefineConfig, {"lang": "flag"})
    with pytest.raises(InputError, match="refine.num_proc must be an integer"):
        from_dict(RefineConfig, {"num_proc": "many"})
    stage = get_stage("refine")
    assert (stage.config, stage.result, stage.folder, stage.inputs) == (RefineConfig, RefineResult, "refined", ())


def test_run_refine_concatenates_its_inputs_and_returns_typed_counts(tmp_path):
    expected = json.loads((DATA / "fauno_sample_expected.json").read_text(encoding="utf-8"))
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"input": "[|Umano|] Dove si trova il Colosseo?\n[|AI|] A Roma."}) + "\n",
                     encoding="utf-8")
    cfg = RefineConfig(inputs=[str(DATA / "fauno_sample.jsonl"), str(extra)], use_lingua=False)
    events = []
    result = run_refine(cfg, Context(output=tmp_path / "out", on_event=lambda e, s: events.append(e)))
    assert events == ["loading", "refining", "writing"]
    assert result.input == expected["rows"] + 1 and result.kept == expected["kept"] + 1
    assert result.rejected == result.input - result.kept
    assert list(result.removed) == report_names(default_rules())  # every rule, in the list's order
    assert {k: v for k, v in result.removed.items() if v} == {k: v for k, v in expected["removed"].items() if v}
    assert result.outputs() == {"refined": str(tmp_path / "out")}
    kept = load_dataset(str(tmp_path / "out"), split="train")
    assert set(kept["source"]) == {"fauno_sample", "extra"}  # each input's name


def test_the_report_order_is_the_rule_list_order():
    refiner = Refiner(use_lingua=False)
    assert refiner.names == report_names(refiner.rules) == [
        "schema", "tag_repair", "empty", "system_prompt", "turn_order", "language", "duplicates"]
    ds = Dataset.from_list([make_row("a", [U("Ciao"), A("Salve")]), make_row("b", [U("Ciao"), A("Salve")])],
                           features=features())
    _, _, report = refiner.run(ds)
    assert [r for r, _, _ in report.rows()] == refiner.names
    assert list(report.changed) == ["tag_repair", "system_prompt", "turn_order", "language"]  # the formatters


class Shouting(Filter):
    """A rule added in one class: conversations whose user writes in capitals."""

    name = "shouting"

    def filter(self, row):
        text = " ".join(m["content"] for m in row["messages"] if m["role"] == "user")
        return True if not text.isupper() else (False, "the user shouts")


class Polite(Formatter):
    name = "polite"
    changes = "greetings added"

    def format(self, messages):
        return [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + " Saluti."}], 1


def test_adding_a_rule_is_one_class_and_one_line_in_the_list():
    rules = default_rules(use_lingua=False)
    rules[3:3] = [Shouting()]  # after 'empty'
    rules.insert(-1, Polite())  # before the sequential duplicates
    ds = Dataset.from_list([make_row("a", [U("CIAO A TUTTI"), A("Salve")]), make_row("b", [U("Ciao"), A("Salve")])],
                           features=features())
    kept, rejected, report = Refiner(rules=rules).run(ds)
    assert [r for r, _, _ in report.rows()] == ["schema", "tag_repair", "empty", "shouting", "system_prompt",
                                                "turn_order", "language", "polite", "duplicates"]
    assert report.removed == {"shouting": 1} and report.changed["polite"] == 1
    assert rejected[0]["rule"] == "shouting" and rejected[0]["reason"] == "the user shouts"
    assert kept[0]["messages"][-1]["content"] == "Salve Saluti."
    assert json.loads(kept[0]["meta"])["refine"] == {"polite": 1}
    assert "polite = greetings added" in report.markdown()
    with pytest.raises(ValueError, match="sequential filters"):
        Refiner(rules=[DuplicateMajority(), EmptyConversation()])


def test_language_filter_alone_removes_what_the_action_asks():
    rows = [make_row("en", [U("Come si dice grazie?"), A("You say thank you, and it is used in many situations.")]),
            make_row("it", [U("Come posso imparare il tedesco in poco tempo?"),
                             A("Inizia con dieci minuti al giorno e un buon dizionario.")])]
    ds = Dataset.from_list(rows, features=features())
    flagged = ds.map(LanguageCheck("it", action="drop-conversation"), batched=True)
    assert flagged.filter(ForeignLanguage("drop-conversation"))["id"] == ["it"]
    assert ForeignLanguage("drop-conversation").filter(flagged[0]) == (False, "1 of 2 messages detected as "
                                                                              "another language")
    dropped = ds.map(LanguageCheck("it", action="drop-message"), batched=True)
    assert dropped[0]["messages"] == [] and json.loads(dropped[0]["meta"])["refine"]["language"] == 2
    assert ForeignLanguage("drop-message").filter(dropped[0]) == (False, "no exchange left after dropping "
                                                                         "foreign messages")
    assert dropped.filter(ForeignLanguage("drop-message"))["id"] == ["it"]
    with pytest.raises(ValueError):
        ForeignLanguage("delete")


def test_turn_order_trim_and_check_share_one_report_row():
    rows = [make_row("a", [U("Ciao"), A("Salve"), U("E poi?")]), make_row("b", [A("Salve"), U("Ciao")])]
    ds = Dataset.from_list(rows, features=features())
    trimmed = ds.map(TrailingUserTurns())
    assert trimmed["messages"] == [[U("Ciao"), A("Salve")], [A("Salve")]]
    assert [json.loads(m)["refine"]["turn_order"] for m in trimmed["meta"]] == [1, 1]
    assert trimmed.filter(TurnOrder())["id"] == ["a"]
    assert TurnOrder().filter(trimmed[1]) == (False, "message 0 is assistant, expected user")
    assert TrailingUserTurns.name == TurnOrder.name == "turn_order"


def test_a_transcript_row_with_a_broken_meta_keeps_its_text(tmp_path):
    ds = Dataset.from_dict({"input": ["[|Umano|] Ciao\n[|AI|] Salve"], "meta": ["[1, 2]"]})
    kept, rejected, report = Refiner(use_lingua=False).run(ds)
    assert len(kept) == 0 and rejected[0]["rule"] == "schema"
    meta = json.loads(rejected[0]["meta"])
    assert meta == {"raw_meta": "[1, 2]", "raw_text": "[|Umano|] Ciao\n[|AI|] Salve"}
