"""The row schema, language packs and the Cerbero chat template."""

import json

import pytest

from cerbero_hf.chat_template import chat_template
from cerbero_hf.errors import InputError
from cerbero_hf.languages import ITALIAN, load_language
from cerbero_hf.schema import MAX_MESSAGE_CHARS, MAX_MESSAGE_TOKENS, features, make_row, row_problem, validate


def test_make_row_matches_features():
    from datasets import Dataset

    row = make_row("a1", [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Salve!"}],
                   source="fauno", meta={"n": 1})
    ds = Dataset.from_list([row], features=features())
    assert ds[0]["messages"][1] == {"role": "assistant", "content": "Salve!"}
    assert json.loads(ds[0]["meta"]) == {"n": 1}


@pytest.mark.parametrize("row, column", [
    ({"messages": []}, "id"),
    ({"id": "", "messages": []}, "id"),
    ({"id": "x", "messages": "ciao"}, "messages"),
    ({"id": "x", "messages": [{"role": "bot", "content": "x"}]}, "messages"),
    ({"id": "x", "messages": [{"role": "user", "content": 3}]}, "messages"),
    ({"id": "x", "messages": [], "meta": "{not json"}, "meta"),
])
def test_row_problem_names_the_column(row, column):
    assert row_problem(row)[0] == column


@pytest.mark.parametrize("messages, reason", [
    ("ciao", "must be a list, got str"),
    (["ciao"], "message 0 is a string, not an object"),
    ([{"content": "ciao"}], "message 0 has no role"),
    ([{"role": ["user"], "content": "ciao"}], "message 0 role is a list, not a string"),
    ([{"role": "user"}], "message 0 has no content"),
    ([{"role": "user", "content": ["lista", "non stringa"]}], "message 0 content is a list, not a string"),
    ([{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}],
     f"message 0 is {MAX_MESSAGE_CHARS + 1:,} characters, over the limit of {MAX_MESSAGE_CHARS:,}"),
])
def test_row_problem_reasons_name_the_message_and_the_type(messages, reason):
    assert row_problem({"id": "x", "messages": messages}) == ("messages", reason)


def test_message_size_limit_and_free_roles():
    assert MAX_MESSAGE_CHARS == 32_768 and MAX_MESSAGE_TOKENS == 8_192
    ok = {"id": "x", "messages": [{"role": "user", "content": "x" * MAX_MESSAGE_CHARS}]}
    assert row_problem(ok) is None
    assert row_problem(ok, max_chars=10)[1] == f"message 0 is {MAX_MESSAGE_CHARS:,} characters, over the limit of 10"
    fauno = {"id": "x", "messages": [{"role": "[|AI|]", "content": "ciao"}]}
    assert row_problem(fauno)[1].startswith("message 0 has role '[|AI|]'")
    assert row_problem(fauno, roles=None) is None  # a stage that maps its own role aliases
    assert row_problem({"id": "x", "messages": [{"role": " ", "content": "a"}]}, roles=None)[1] == \
        "message 0 has an empty role"


def test_validate_names_row_and_field():
    rows = [make_row("a", [{"role": "user", "content": "x"}]), {"id": "b", "messages": [{"role": "robot", "content": "x"}]}]
    with pytest.raises(InputError) as err:
        validate(rows, file="corpus.jsonl")
    assert str(err.value).startswith("file corpus.jsonl, row 1, column 'messages': message 0 has role 'robot'")


def test_language_pack_from_yaml(tmp_path):
    data = ITALIAN.to_dict()
    data.pop("extra")
    data.update(code="es", name="Spanish", user_tag="[|Humano|]", assistant_tag="[|Asistente|]", lingua_name="SPANISH")
    import yaml

    (tmp_path / "es.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    pack = load_language(tmp_path / "es.yaml")
    assert pack.user_tag == "[|Humano|]" and pack.function_words == ITALIAN.function_words
    assert "[|Asistente|] " in chat_template(pack)


def test_language_pack_errors(tmp_path):
    with pytest.raises(InputError, match="unknown language 'xx'"):
        load_language("xx")
    (tmp_path / "bad.yaml").write_text("code: xx\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="bogus"):
        load_language(tmp_path / "bad.yaml")


def test_cerbero_template_golden(tiny_chat_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_lm)
    msgs = [{"role": "user", "content": "Ciao"}, {"role": "assistant", "content": "Ciao! Come posso aiutarti?"},
            {"role": "user", "content": "Grazie"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<s>[|Umano|] Ciao\n[|Assistente|] Ciao! Come posso aiutarti?\n[|Umano|] Grazie\n[|Assistente|] "
    with pytest.raises(Exception, match="Unknown role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
    tok.chat_template = chat_template("it", training=True)
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == text
