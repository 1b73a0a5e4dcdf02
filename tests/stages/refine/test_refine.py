"""Refinement rules (paper §3.1) alone with Dataset.filter/map, and the Refiner on our fixtures."""

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT
from datasets import Dataset, load_dataset

from cerbero_hf.errors import InputError
from cerbero_hf.schema import features, make_row
from cerbero_hf.stages.refine.refiner import Refiner, refine
from cerbero_hf.stages.refine.rules import (
    DuplicateMajority,
    EmptyConversation,
    LanguageCheck,
    SystemPrompts,
    TagRepair,
    TrailingUserTurns,
    TurnOrder,
    message_hashes,
)

DATA = ROOT / "cerbero_hf" / "data"


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


def corpus(*conversations):
    return Dataset.from_list([make_row(f"c{i}", m) for i, m in enumerate(conversations)], features=features())


def ids(ds):
    return list(ds["id"])


def test_rules_alone_with_dataset_filter_and_map():
    ds = corpus([{"role": "system", "content": "Sei un assistente."}, U("Ciao"), A("Salve!"), U("")],
                [U(" "), A("")],
                [A("Buongiorno"), U("Ciao")],
                [U("Ciao"), A("Salve!"), U("Una domanda in sospeso?")])
    assert ids(ds.filter(EmptyConversation())) == ["c0", "c2", "c3"]
    assert EmptyConversation().filter(ds[1]) == (False, "no user or assistant text (2 messages)")
    cleaned = ds.map(SystemPrompts()).map(TrailingUserTurns())
    assert cleaned[0]["messages"] == [U("Ciao"), A("Salve!")]
    assert json.loads(cleaned[0]["meta"])["refine"] == {"system_prompt": 1, "turn_order": 0}
    assert json.loads(cleaned[3]["meta"])["refine"]["turn_order"] == 1  # non-empty trailing user: counted
    assert ids(cleaned.filter(TurnOrder().keep)) == ids(cleaned.filter(TurnOrder())) == ["c0", "c3"]
    assert TurnOrder().filter(cleaned[2]) == (False, "message 0 is assistant, expected user")


def test_tag_repair_rule_maps_a_transcript_column():
    text = "La conversazione tra umano e assistente AI.\n[| Umano |] Ciao\n[IA] Salve\n[|Umano|] "
    ds = Dataset.from_dict({"input": [text]})
    out = ds.map(TagRepair("it", text_column="input"))
    assert out[0]["messages"][1:] == [U("Ciao"), A("Salve"), U("")]
    assert json.loads(out[0]["meta"])["refine"]["tag_repair"] == 2


def test_duplicate_majority_is_order_aware_and_keeps_one_copy():
    a = [U("Come stai?"), A("Bene, grazie.")]
    b = [U("Che tempo fa?"), A("Piove.")]
    ds = corpus(a, a, [U("Come  stai? "), A("Bene, grazie."), U("E domani?"), A("Sole.")],  # 2 of 4: kept
                [U("Come stai?"), A("Male.")],  # 1 of 2: kept
                b, [U("Che tempo fa?"), A("Piove."), U("Come stai?"), A("Nuovo.")])  # 3 of 4: removed
    rule = DuplicateMajority()
    assert ids(ds.filter(rule)) == ["c0", "c2", "c3", "c4"]
    # a removed conversation does not make later ones duplicates: only KEPT ones count
    rule = DuplicateMajority()
    assert rule.filter(corpus(a)[0]) is True
    assert rule.filter(corpus(a + b)[0]) is True  # 2 of 4
    assert rule.filter(corpus(b + [U("x"), A("y")])[0]) is True  # b was seen via the kept a+b: 2 of 4


def test_header_and_system_prompt_are_not_hashed():
    header = {"role": "system", "content": "La conversazione tra umano e assistente AI."}
    assert message_hashes([header, U("Ciao"), A("Salve")]) == message_hashes([U("Ciao"), A("Salve")])
    rule = DuplicateMajority()
    assert rule.filter({"messages": [header, U("Uno"), A("Due")]}) is True
    assert rule.filter({"messages": [header, U("Tre"), A("Quattro")]}) is True


def test_language_check_alone_flags_english_messages():
    ds = corpus([U("Come si dice grazie in inglese?"), A("You say thank you, and it is used in many situations.")])
    out = ds.map(LanguageCheck("it"), batched=True)
    meta = json.loads(out[0]["meta"])
    assert meta["foreign_language"] == [False, True] and out[0]["messages"] == ds[0]["messages"]
    with pytest.raises(ValueError):
        LanguageCheck("it", action="delete")


def check_output(out: Path, input_ids: list[str]):
    kept = load_dataset(str(out), split="train")
    rejected = load_dataset(str(out), "rejected", split="train")
    assert sorted(ids(kept) + ids(rejected)) == sorted(input_ids)
    assert set(rejected.column_names) >= {"rule", "reason"} and all(rejected["reason"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "language:\n- it" in card and "license:" in card and "| rule | conversations removed |" in card
    return kept, rejected


def test_refiner_on_the_messages_fixture(tmp_path):
    path = FIXTURES / "fauno_messages.jsonl"
    report = refine(path, tmp_path / "out")
    input_ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    kept, rejected = check_output(tmp_path / "out", input_ids)
    assert report.removed == {"schema": 4, "empty": 2, "turn_order": 3, "duplicates": 2}
    assert report.changed == {"tag_repair": 0, "system_prompt": 1, "turn_order": 3, "language": 3}
    by_id = {r["id"]: r for r in rejected}
    assert by_id["m13"]["rule"] == "schema" and "role 'bot'" in by_id["m13"]["reason"]
    assert by_id["m15"]["reason"] == "column 'messages': must be a list, got str"
    assert by_id["m16"]["reason"] == "column 'meta': is not a JSON object" and by_id["m16"]["messages"]
    assert json.loads(by_id["m14"]["meta"])["raw_messages"].endswith('"content": 4}]')  # nothing lost
    rows = {r["id"]: r for r in kept}
    assert rows["m01"]["messages"][-1]["role"] == "assistant" and len(rows["m02"]["messages"]) == 2
    assert json.loads(rows["m11"]["meta"])["foreign_language"] == [False, True, False, False]
    assert json.loads(rows["m11"]["meta"])["origin"] == "quora"
    assert "foreign_language" not in json.loads(rows["m12"]["meta"])  # mostly code
    assert all(m["role"] != "system" for r in kept for m in r["messages"])


def test_refiner_on_the_raw_fixture_autodetects_the_transcript_column(tmp_path):
    report = refine(FIXTURES / "fauno_raw.jsonl", tmp_path / "out")
    kept, rejected = check_output(tmp_path / "out", [f"row-{i}" for i in range(8)])
    assert report.removed == {"schema": 1, "empty": 1, "turn_order": 1, "duplicates": 1}
    assert report.changed == {"tag_repair": 7, "system_prompt": 6, "turn_order": 2, "language": 0}
    assert kept[2]["messages"] == [U("Dove si trova il Duomo?"), A("A Milano, in piazza del Duomo.")]


def test_text_column_option_and_input_errors():
    ds = Dataset.from_dict({"testo": ["[|Umano|] Ciao\n[|AI|] Salve"], "n": [1]})
    with pytest.raises(InputError, match="no 'messages' column and no transcript column"):
        Refiner().run(ds, file="x.jsonl")
    kept, rejected, report = Refiner(text_column="testo").run(ds)
    assert kept[0]["messages"] == [U("Ciao"), A("Salve")] and len(rejected) == 0
    with pytest.raises(InputError, match="expected string") as err:
        Refiner(text_column="n").run(ds, file="x.jsonl")
    assert err.value.column == "n"
    with pytest.raises(InputError, match="expected a list"):
        Refiner().run(Dataset.from_dict({"messages": [3]}), file="x.jsonl")



def test_a_transcript_holding_an_oversized_message_is_rejected_with_its_size():
    """The schema check cannot see inside a transcript: the message size limit applies once it is parsed."""
    from cerbero_hf.schema import MAX_MESSAGE_CHARS

    huge = "parola " * (MAX_MESSAGE_CHARS // 7 + 10)
    ds = Dataset.from_dict({"testo": ["[|Umano|] Ciao\n[|AI|] Salve", f"[|Umano|] Ciao\n[|AI|] {huge}"]})
    kept, rejected, report = Refiner(text_column="testo", use_lingua=False).run(ds)
    assert [r["id"] for r in kept] == ["row-0"] and [r["id"] for r in rejected] == ["row-1"]
    assert rejected[0]["rule"] == "turn_order" and "over the limit" in rejected[0]["reason"]


EXPECTED = json.loads((DATA / "fauno_sample_expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("action, num_proc", [("flag", 2), ("drop-message", None), ("drop-conversation", None)])
def test_bundled_sample_has_its_known_defect_counts(tmp_path, action, num_proc):
    report = refine(DATA / "fauno_sample.jsonl", tmp_path / "out", lang_action=action, num_proc=num_proc)
    removed = {k: v for k, v in EXPECTED["removed"].items() if v}
    changed = dict(EXPECTED["changed"])
    if action == "drop-message":
        removed["language"] = EXPECTED["drop_message"]["removed"]
        changed["language"] = EXPECTED["drop_message"]["changed"]
    if action == "drop-conversation":
        removed["language"] = EXPECTED["drop_conversation"]["removed"]
    assert report.removed == removed
    assert report.changed == changed
    kept, rejected = check_output(tmp_path / "out", [f"fauno-sample-{i:06d}" for i in range(EXPECTED["rows"])])
    assert len(kept) == EXPECTED["rows"] - sum(removed.values())
    assert json.loads((tmp_path / "out" / "refine_report.json").read_text())["kept"] == len(kept)
