"""A huge benchmark item is cut to what the model's window can hold before anything is tokenised.

Before: a 10 MB SQuAD context was tokenised whole (two times: to sort the prompts and to generate), about
4 GB of memory, only for all but the model's last 1,024 tokens to be thrown away.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES

from cerbero_hf.stages.evaluate import evaluation_settings, prompt_format, task_configs
from cerbero_hf.stages.evaluate.generators import LocalGenerator, cut_messages, longest_token_chars
from cerbero_hf.stages.evaluate.runner import evaluate_tasks

SETTINGS = evaluation_settings("it")
SENTENCES = ["Il gatto dorme sul divano.", "La capitale d'Italia è Roma.", "Domani andiamo al mare con gli amici.",
             "Il treno per Milano parte alle otto.", "Mia madre prepara la cena in cucina."]


def _text(chars: int) -> str:
    """Numbered Italian sentences, each one different, so where a cut falls shows in the tokens."""
    parts, n, i = [], 0, 0
    while n < chars:
        parts.append(f"{i}. {SENTENCES[i % len(SENTENCES)]}")
        n += len(parts[-1]) + 1
        i += 1
    return " ".join(parts)


@pytest.fixture(scope="module")
def generator(tiny_chat_lm):
    return LocalGenerator(str(tiny_chat_lm), device="cpu")


def test_cut_messages_keeps_the_end_of_long_messages_only():
    chat = [{"role": "user", "content": "abcdef"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "0123456789"}]
    cut, n = cut_messages(chat, 4)
    assert n == 2 and [m["content"] for m in cut] == ["cdef", "ok", "6789"] and cut[1] is chat[1]
    assert cut_messages(chat, 10) == (chat, 0) and cut_messages(chat, None) == (chat, 0)
    assert chat[0]["content"] == "abcdef"  # the caller's chat is left as it was


@pytest.mark.parametrize("fmt_name", ["chat", "cerbero"])
def test_the_model_sees_the_same_tokens_with_and_without_the_cut(generator, fmt_name):
    fmt = prompt_format(fmt_name, "it", SETTINGS)
    assert generator.max_chars == generator.max_positions * longest_token_chars(generator.tokenizer)
    chat = [{"role": "user", "content": _text(3 * generator.max_chars)}]
    whole = generator.lm.encode(fmt.render(chat, generator.tokenizer), special_tokens=not fmt.uses_chat_template)
    cut = generator.encode(chat, fmt)
    room = generator.max_positions - 16  # what LocalLM keeps for 16 new tokens: the prompt's end
    assert len(whole) > len(cut) > generator.max_positions  # the cut prompt still fills the window ...
    assert cut[-room:] == whole[-room:]  # ... with exactly the tokens the whole prompt would give


def test_a_huge_benchmark_item_is_cut_before_tokenisation_and_recorded(generator, tmp_path):
    data = tmp_path / "eval"
    shutil.copytree(FIXTURES / "eval", data)
    path = data / "squad_it" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["context"] = _text(5_000_000)  # 5 MB: about 1.5 million tokens if tokenised whole
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tasks = task_configs(["squad_it"], SETTINGS, data_dir=data)
    tasks[0].max_new_tokens = 8
    cut_before = generator.cut
    doc = evaluate_tasks(tasks, generator, prompt_format("chat", "it", SETTINGS), limit=2, settings=SETTINGS,
                         keep_predictions=True)
    block = doc["tasks"]["squad_it"]
    assert block["n"] == 2 and block["failed"] == 0 and len(doc["predictions"]["squad_it"]) == 2
    assert block["truncated"] == 1  # recorded: the huge item's prompt was cut to the window
    assert generator.cut - cut_before == 1  # and its message was cut before tokenisation
