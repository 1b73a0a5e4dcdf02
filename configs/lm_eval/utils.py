"""lm-evaluation-harness hooks for the cerbero_it tasks: the same data mapping and scores as
``cerbero-hf evaluate`` (cerbero_hf.stages.evaluate), so both harnesses agree on what is counted.

``process_docs_<task>`` keep the rows whose label maps to a label word (binary protocol, D30)
and add ``label_word``; ``process_results_*`` score one generation; ``macro_f1`` / ``weighted_f1`` aggregate
(gold, prediction) pairs over the task's labels. Settings (label maps, columns) come from the language's
evaluation file, ``cerbero_hf/data/eval/tasks-it.yaml``.
"""

from __future__ import annotations

from cerbero_hf.stages.evaluate.generators import clean_answer
from cerbero_hf.stages.evaluate.metrics import (
    classification_scores,
    normalize_italian,
    normalize_squad,
    parse_label,
    squad_scores,
)
from cerbero_hf.stages.evaluate.tasks import evaluation_settings

_SETTINGS = evaluation_settings("it")
_STOP = ("[|Umano|]", "[|AI|]")


def _task(name: str) -> dict:
    return _SETTINGS["tasks"][name]


def _label_word(name: str, doc: dict) -> str | None:
    spec = _task(name)
    column = spec["columns"]["label"]
    key = "".join(str(doc[c]) for c in column) if isinstance(column, list) else str(doc[column])
    word = spec["label_map"].get(key)
    return word if word is not None else (key if key in spec["labels"] else None)


def _process(name: str, dataset):
    text = _task(name)["columns"]["text"]
    kept = dataset.filter(lambda doc: _label_word(name, doc) is not None)
    return kept.map(lambda doc: {"label_word": _label_word(name, doc), "input": doc[text]})


def process_docs_sentipolc(dataset):
    return _process("sentipolc", dataset)


def process_docs_ironita(dataset):
    return _process("ironita", dataset)


def process_docs_ami2020(dataset):
    return _process("ami2020", dataset)


def process_results_squad(doc: dict, results: list[str]) -> dict:
    answer = clean_answer(results[0], _STOP)
    golds = [a for a in doc["answers"]["text"] if a.strip()]
    em, f1 = squad_scores(answer, golds, normalize_italian)
    em_s, f1_s = squad_scores(answer, golds, normalize_squad)
    return {"exact_match": 100 * em, "f1": 100 * f1, "exact_match_squad": 100 * em_s, "f1_squad": 100 * f1_s}


def _process_results(name: str, doc: dict, results: list[str]) -> dict:
    labels = _task(name)["labels"]
    pred = parse_label(clean_answer(results[0], _STOP), labels)
    pair = (doc["label_word"], pred, tuple(labels))
    return {"accuracy": 100.0 * (pred == doc["label_word"]), "macro_f1": pair, "weighted_f1": pair}


def process_results_sentipolc(doc, results):
    return _process_results("sentipolc", doc, results)


def process_results_ironita(doc, results):
    return _process_results("ironita", doc, results)


def process_results_ami2020(doc, results):
    return _process_results("ami2020", doc, results)


def _aggregate(items, key: str) -> float:
    golds, preds, labels = [g for g, _, _ in items], [p for _, p, _ in items], items[0][2] if items else ()
    return classification_scores(preds, golds, list(labels))[key]


def macro_f1(items) -> float:
    return _aggregate(items, "macro_f1")


def weighted_f1(items) -> float:
    return _aggregate(items, "weighted_f1")
