"""Evaluation logic (paper §4.2, D29-D32): metrics, label parsing, prompt formats, shot draws, task data."""

from __future__ import annotations

import filecmp

import pytest
from conftest import FIXTURES, ROOT

from cerbero_hf.errors import InputError
from cerbero_hf.stages.evaluate import (
    FORMATS,
    TASKS,
    UNKNOWN,
    ShotSampler,
    classification_scores,
    evaluation_settings,
    few_shot_messages,
    load_examples,
    normalize_italian,
    normalize_squad,
    parse_label,
    prompt_format,
    squad_metrics,
    squad_scores,
    task_configs,
)
from cerbero_hf.stages.evaluate.generators import clean_answer
from cerbero_hf.stages.evaluate.runner import build_chats

FIX = FIXTURES / "eval"
BUNDLED = ROOT / "cerbero_hf" / "data" / "eval"
SETTINGS = evaluation_settings("it")


# --- SQuAD metric -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, italian, official", [
    ("l'Italia", "italia", "litalia"),
    ("L’Aquila", "aquila", "l’aquila"),          # typographic apostrophe
    ("Il Po.", "po", "il po"),
    ("«la Divina Commedia»", "divina commedia", "«la divina commedia»"),
    ("un'amica", "amica", "unamica"),
    ("dell'arte", "dell arte", "dellarte"),      # a preposition, not an article: kept
    ("gli Stati Uniti", "stati uniti", "gli stati uniti"),
    ("The Tiber", "the tiber", "tiber"),         # English articles only under the official normaliser
    ("Pompei   ed\tErcolano!", "pompei ed ercolano", "pompei ed ercolano"),
])
def test_normalisers(text, italian, official):
    assert normalize_italian(text) == italian
    assert normalize_squad(text) == official


def test_squad_scores_hand_computed():
    # Italian articles: "l'Italia" vs "Italia" is an exact match only under the Italian normaliser.
    assert squad_scores("l'Italia", ["Italia"], normalize_italian) == (1.0, 1.0)
    assert squad_scores("l'Italia", ["Italia"], normalize_squad) == (0.0, 0.0)
    # Partial overlap: pred "fiume tevere a roma" (4 tokens) vs gold "tevere" (1): P = 1/4, R = 1, F1 = 0.4.
    em, f1 = squad_scores("il fiume Tevere a Roma", ["Tevere"], normalize_italian)
    assert em == 0.0 and f1 == pytest.approx(0.4)
    # Max over gold answers: the second gold matches exactly.
    assert squad_scores("Monviso", ["dal Monviso alle Alpi", "il Monviso"], normalize_italian) == (1.0, 1.0)
    # Repeated tokens count once per occurrence: pred "roma roma" vs gold "roma": P 1/2, R 1 -> 2/3.
    assert squad_scores("Roma, Roma", ["Roma"], normalize_italian)[1] == pytest.approx(2 / 3)
    # Empty prediction scores 0 against a non-empty gold; an answer that normalises to nothing matches only nothing.
    assert squad_scores("", ["Cagliari"]) == (0.0, 0.0)
    assert squad_scores("il", ["la"], normalize_italian) == (1.0, 1.0)


def test_squad_metrics_corpus_percentages():
    preds = ["l'Italia", "Torino", "nel 1861"]
    golds = [["Italia"], ["Roma"], ["1861", "il 17 marzo 1861"]]
    m = squad_metrics(preds, golds)
    # Italian: EM 1,0,0 ; F1 1, 0, max(2*(1/2*1)/(1.5)=2/3, P1/2 R1/3 -> 0.4) = 2/3.
    assert m["exact_match"] == pytest.approx(100 / 3)
    assert m["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    # Official: "litalia" != "italia" -> EM 0,0,0 ; F1 0, 0, 2/3.
    assert m["exact_match_squad"] == 0.0
    assert m["f1_squad"] == pytest.approx(100 * (2 / 3) / 3)


# --- label parsing and classification scores ----------------------------------------------------

IRONY = ["IRONICO", "NON_IRONICO"]


@pytest.mark.parametrize("answer, expected", [
    ("IRONICO", "IRONICO"),
    ("NON_IRONICO", "NON_IRONICO"),
    ("  NON_IRONICO  ", "NON_IRONICO"),       # surrounding spaces
    ("NON_IRONICO, perché è serio.", "NON_IRONICO"),  # answer starts with the longest label
    ("IRONICO!", "IRONICO"),
    ("NON", "NON_IRONICO"),                  # label starts with the answer (truncated)
    ("I", "IRONICO"),
    ("ironico", UNKNOWN),                    # case-sensitive, as in benchita
    ("Secondo me è ironico", UNKNOWN),
    ("", UNKNOWN),                           # empty: unknown (not "every label starts with ''")
    ("   ", UNKNOWN),
])
def test_parse_label(answer, expected):
    assert parse_label(answer, IRONY) == expected


def test_parse_label_longest_first_and_ties():
    # "NEG" is a prefix of NEGATIVO only; "NEGATIVO" exact; a longer label wins when both would match.
    assert parse_label("NEG", ["POSITIVO", "NEGATIVO"]) == "NEGATIVO"
    assert parse_label("MISOGINO_X", ["MISOGINO", "NON_MISOGINO"]) == "MISOGINO"
    assert parse_label("NON_MISOGINO", ["MISOGINO", "NON_MISOGINO"]) == "NON_MISOGINO"
    assert parse_label("A", ["AB", "ABC"]) == "ABC"  # both start with "A": the longest label is tried first


def test_classification_scores_hand_computed():
    labels = ["POSITIVO", "NEGATIVO"]
    golds = ["POSITIVO", "POSITIVO", "NEGATIVO", "NEGATIVO"]
    preds = ["POSITIVO", UNKNOWN, "NEGATIVO", "POSITIVO"]
    m = classification_scores(preds, golds, labels)
    # POSITIVO: TP 1, FP 1, FN 1 -> F1 0.5 ; NEGATIVO: TP 1, FP 0, FN 1 -> P 1, R .5, F1 2/3.
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["macro_f1"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    assert m["weighted_f1"] == pytest.approx(100 * (0.5 * 2 + 2 / 3 * 2) / 4)
    perfect = classification_scores(golds, golds, labels)
    assert perfect == {"accuracy": 100.0, "macro_f1": 100.0, "weighted_f1": 100.0}


def test_clean_answer():
    assert clean_answer(" Cagliari\n[|Umano|] altra domanda", ["[|Umano|]"]) == "Cagliari"
    assert clean_answer(" Roma[|Umano|] x", ["[|Umano|]"]) == "Roma"
    assert clean_answer("\n\n  Torino  \nseconda riga", []) == "Torino"   # first non-empty line
    assert clean_answer("NEGATIVO\n### Istruzione:", ["\n"]) == "NEGATIVO"
    assert clean_answer("a [|AI|] b [|Umano|] c", ["[|Umano|]", "[|AI|]"]) == "a"  # earliest stop wins


# --- prompts -----------------------------------------------------------------------------------

CAMOSCIO = ("Di seguito è riportata un'istruzione che descrive un task. Scrivete una risposta che completi "
            "adeguatamente la richiesta.\n\n### Istruzione:\n")

# One shot per task with seed 42 (the draw is part of the golden): (shot id, shot input, shot answer, query).
GOLDEN_SHOTS = {
    "squad_it": ("squad-train-007",
                 "Il Vesuvio è un vulcano che domina il golfo di Napoli. Nel 79 d.C. la sua eruzione distrusse "
                 "Pompei ed Ercolano.\nQuale golfo domina il Vesuvio?", "il golfo di Napoli",
                 "La Sardegna è la seconda isola più grande del Mediterraneo. Il suo capoluogo è Cagliari.\n"
                 "Qual è il capoluogo della Sardegna?"),
    "sentipolc": ("sentipolc-test-004", "Sono deluso dal ristorante, cibo freddo e conto salato.", "NEGATIVO",
                  "Finalmente in vacanza, la vista da qui è stupenda!"),
    "ironita": ("ironita-test-010", "Ah sì, il politico onesto: come l'unicorno.", "IRONICO",
                "Ottimo, il bus è passato pieno per la terza volta: adoro camminare."),
    "ami2020": ("ami2020-test-012", "Sono tutte uguali, pensano solo ai soldi.", "MISOGINO",
                "Le donne al volante sono un pericolo pubblico."),
}


def golden(fmt: str, shot: str, answer: str, query: str) -> str:
    """The prompt each format must produce (D27, D31, D32), written out from the spec."""
    if fmt == "chat":  # the tiny model's Cerbero chat template: BOS, tags with a space, trailing "[|Assistente|] "
        return f"<s>[|Umano|] {shot}\n[|Assistente|] {answer}\n[|Umano|] {query}\n[|Assistente|] "
    if fmt == "cerbero":
        return f"[|Umano|] {shot}\n[|Assistente|] {answer}\n[|Umano|] {query}\n[|Assistente|]"
    if fmt == "fauno":
        return f"[|Umano|] {shot}\n[|AI|] {answer}\n[|Umano|] {query}\n[|AI|]"
    return f"{CAMOSCIO}{shot}\n\n### Risposta:\n{answer}\n\n{CAMOSCIO}{query}\n\n### Risposta:\n"


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_chat_lm):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_lm)


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_prompts(task_name, fmt, chat_tokenizer):
    task = task_configs([task_name], SETTINGS, data_dir=FIX, shots={task_name: 1})[0]
    queries = load_examples(task, "test")[0]
    pool = load_examples(task, task.shot_split)[0]
    chats, shot_ids = build_chats(task, queries[:1], pool, seed=42)
    shot_id, shot, answer, query = GOLDEN_SHOTS[task_name]
    assert shot_ids == [[shot_id]]
    assert prompt_format(fmt, "it", SETTINGS).render(chats[0], chat_tokenizer) == golden(fmt, shot, answer, query)


def test_instruction_turn_golden():
    task = task_configs(["sentipolc"], SETTINGS, data_dir=FIX, shots={"sentipolc": 1}, instruction=True)[0]
    chat = few_shot_messages([("Che bello!", "POSITIVO")], "Che noia.", task.instruction, task.confirmation,
                             SETTINGS["instruction_question"])
    text = prompt_format("cerbero", "it", SETTINGS).render(chat)
    assert text == (f"[|Umano|] {task.instruction} È tutto chiaro?\n[|Assistente|] {task.confirmation}\n"
                    "[|Umano|] Che bello!\n[|Assistente|] POSITIVO\n[|Umano|] Che noia.\n[|Assistente|]")
    assert task_configs(["sentipolc"], SETTINGS, data_dir=FIX)[0].instruction is None  # off by default (D30)


def test_stop_strings_per_format():
    assert prompt_format("chat").stop == ("[|Umano|]",)
    assert prompt_format("cerbero").stop == ("[|Umano|]",)
    assert prompt_format("fauno").stop == ("[|Umano|]",)
    assert prompt_format("camoscio", settings=SETTINGS).stop == ("\n",)
    with pytest.raises(InputError, match="unknown prompt format"):
        prompt_format("alpaca")


def test_chat_format_without_template_is_an_input_error():
    class NoTemplate:
        chat_template = None

    with pytest.raises(InputError, match="chat template"):
        prompt_format("chat").render([{"role": "user", "content": "x"}], NoTemplate())


def test_transcript_rejects_broken_turn_order():
    with pytest.raises(ValueError, match="alternating"):
        prompt_format("cerbero").render([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}])


# --- shot sampling ------------------------------------------------------------------------------

def _pool(task_name, split):
    task = task_configs([task_name], SETTINGS, data_dir=FIX)[0]
    return task, load_examples(task, split)[0]


def test_shots_never_include_the_query_and_are_reproducible():
    task, items = _pool("ironita", "test")
    sampler = ShotSampler(items, 5, seed=7, task="ironita")
    for q in items:
        shots = sampler.shots_for(q)
        assert len(shots) == 5 and len({s.id for s in shots}) == 5
        assert q.id not in {s.id for s in shots} and q.input not in {s.input for s in shots}
        assert [s.id for s in ShotSampler(items, 5, seed=7, task="ironita").shots_for(q)] == [s.id for s in shots]
    other = ShotSampler(items, 5, seed=8, task="ironita")
    assert any([s.id for s in other.shots_for(q)] != [s.id for s in sampler.shots_for(q)] for q in items)


def test_shots_excluded_by_identical_input_from_another_split():
    task, train = _pool("squad_it", "train")
    query = train[0].__class__("some-test-id", train[0].input, "x", ("x",))  # same text, different id
    for seed in range(20):
        assert query.input not in {s.input for s in ShotSampler(train, 3, seed, "squad_it").shots_for(query)}


def test_balanced_shots():
    task, items = _pool("ami2020", "test")
    sampler = ShotSampler(items, 4, seed=1, task="ami2020", balanced=True)
    for q in items:
        labels = [s.target for s in sampler.shots_for(q)]
        assert labels.count("MISOGINO") == 2 and labels.count("NON_MISOGINO") == 2
    odd = ShotSampler(items, 5, seed=1, task="ami2020", balanced=True)
    counts = sorted(([s.target for s in odd.shots_for(items[0])].count(lab) for lab in ("MISOGINO", "NON_MISOGINO")))
    assert counts == [2, 3]


def test_too_few_shots_is_an_input_error():
    task, items = _pool("squad_it", "test")
    with pytest.raises(InputError, match="shot"):
        ShotSampler(items[:3], 3, seed=0, task="squad_it").shots_for(items[0])


# --- tasks and fixture data ---------------------------------------------------------------------

def test_fixture_tasks_load_with_real_schemas():
    counts = {}
    for task in task_configs(TASKS, SETTINGS, data_dir=FIX):
        examples, skipped = load_examples(task, task.eval_split)
        counts[task.name] = (len(examples), skipped)
        if task.kind == "classification":
            assert {e.target for e in examples} == set(task.labels)
    # SENTIPOLC (binary, D30): 2 neutral + 1 mixed test tweets are skipped and counted.
    assert counts == {"squad_it": (12, 0), "sentipolc": (13, 3), "ironita": (16, 0), "ami2020": (16, 0)}
    squad = task_configs(["squad_it"], SETTINGS, data_dir=FIX)[0]
    first = load_examples(squad, "test")[0][0]
    assert first.input.endswith("\nQual è il capoluogo della Sardegna?") and first.golds == ("Cagliari",)


def test_fixture_answer_starts_point_at_the_answers():
    import json

    for split in ("train", "test"):
        for line in (FIX / "squad_it" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start:start + len(text)] == text


def test_bundled_demo_copy_matches_fixtures():
    for path in sorted(FIX.rglob("*.jsonl")):
        assert filecmp.cmp(path, BUNDLED / path.relative_to(FIX), shallow=False), path


def test_task_settings_defaults_and_errors(tmp_path):
    tasks = {t.name: t for t in task_configs(TASKS, SETTINGS)}
    squad, ironita = tasks["squad_it"], tasks["ironita"]
    assert (squad.dataset, squad.shots, squad.shot_split) == ("crux82/squad_it", 3, "train")
    assert (ironita.dataset, ironita.config, ironita.shots) == ("RiTA-nlp/UINAUIL", "ironita", 5)
    assert tasks["ami2020"].shot_split == tasks["ami2020"].eval_split == "test"  # same split minus the query
    with pytest.raises(InputError, match="unknown task"):
        task_configs(["nope"], SETTINGS)
    with pytest.raises(InputError, match="no data"):
        task_configs(["squad_it"], SETTINGS, data_dir=tmp_path)
    override = tmp_path / "over.yaml"
    override.write_text("tasks:\n  ironita:\n    columns: {label: sarcasm}\n    shots: 2\n", encoding="utf-8")
    merged = task_configs(["ironita"], evaluation_settings("it", override), data_dir=FIX)[0]
    assert merged.columns == {"id": "id", "text": "text", "label": "sarcasm"} and merged.shots == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  ironita:\n    columns: {label: nope}\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        load_examples(task_configs(["ironita"], evaluation_settings("it", bad), data_dir=FIX)[0], "test")
