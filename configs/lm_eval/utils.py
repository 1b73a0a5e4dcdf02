"""lm-evaluation-harness hooks for the cerbero_it tasks: the data, shots and scores of ``cerbero-hf evaluate``.

They are cerbero-hf's own code, not a copy of it: **cerbero-hf must be installed beside lm-eval**, in the venv
that runs ``lm_eval`` (``pip install torch==2.13.0 lm_eval==0.4.13 cerbero-hf``; ``requirements/lm-eval.txt``
pins a tested set). Keep lm-eval out of the project's own venv: it would downgrade ``python-dateutil``.

- :func:`load_task` (``custom_dataset``): the task's evaluation split, read by cerbero-hf's ``load_examples`` from
  the Hub id of ``tasks-it.yaml`` or, with ``data_dir``, from ``<data_dir>/<task>/`` (``bundled``: the files
  shipped in the installed ``cerbero_hf/data/eval``, no network). Each doc is one of ``cerbero-hf evaluate``'s
  examples: ``id``, ``input`` (the user turn), ``target`` (the answer a shot shows), ``golds``, plus ``task``,
  ``data_dir`` and ``seed`` for the sampler. Rows whose label is not a label word are skipped, as there.
- :class:`CerberoShots` (``fewshot_config.sampler``): per query, the shots ``cerbero-hf evaluate`` draws
  (cerbero-hf's ``ShotSampler``: same seed, same pool, the task's shot split), whatever ``--num_fewshot`` asks.
- ``process_results_*``: one answer, cut at the chat format's stop string and to its first non-empty line
  (``clean_answer``), scored by cerbero-hf's metrics; :func:`macro_f1` / :func:`weighted_f1` aggregate
  (gold, prediction) pairs over the task's labels.

Runtime settings come through ``--metadata`` (JSON): ``seed`` (default 42, ``cerbero-hf evaluate --seed``) and
``data_dir`` (``cerbero-hf evaluate --data-dir``). Task settings come from ``cerbero_hf/data/eval/tasks-it.yaml``.
"""

from __future__ import annotations

import functools

from cerbero_hf.stages.evaluate.generators import clean_answer
from cerbero_hf.stages.evaluate.metrics import classification_scores, parse_label, squad_metrics
from cerbero_hf.stages.evaluate.prompts import ShotSampler, prompt_format
from cerbero_hf.stages.evaluate.tasks import DATA, Example, evaluation_settings, load_examples, task_configs

try:
    from lm_eval.api.samplers import ContextSampler
except ImportError:  # imported without lm-eval (the project's tests check these hooks in its own venv)
    ContextSampler = object  # type: ignore[assignment,misc]

_SETTINGS = evaluation_settings("it")
_STOP = prompt_format("chat", "it").stop  # what `cerbero-hf evaluate --format chat` (its default) stops at
SEED = 42  # `cerbero-hf evaluate --seed`'s default
BUNDLED = "bundled"  # data_dir: the evaluation files shipped in the cerbero_hf package


def _data_dir(data_dir: str | None) -> str | None:
    return str(DATA) if data_dir == BUNDLED else data_dir


@functools.lru_cache(maxsize=None)
def _config(task: str, data_dir: str | None):
    return task_configs([task], _SETTINGS, data_dir=_data_dir(data_dir))[0]


def load_task(task: str, data_dir: str | None = None, seed: int = SEED, **_):
    """``custom_dataset``: ``{"test": docs}``, the task's evaluation split as ``cerbero-hf evaluate`` reads it.

    lm-eval calls it with the task's ``metadata`` (``--metadata`` and ``--model_args`` merged in) and its
    ``dataset_kwargs`` (``task``); keys other than ``data_dir`` and ``seed`` are ignored.
    """
    import datasets

    config = _config(task, data_dir)
    examples, _skipped = load_examples(config, config.eval_split)
    rows = [{"id": e.id, "input": e.input, "target": e.target, "golds": list(e.golds), "task": task,
             "data_dir": data_dir or "", "seed": int(seed)} for e in examples]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


@functools.lru_cache(maxsize=None)
def _sampler(task: str, data_dir: str | None, seed: int, k: int) -> ShotSampler:
    config = _config(task, data_dir)
    pool = load_examples(config, config.shot_split)[0]  # the whole split, as cerbero-hf evaluate's pool
    return ShotSampler(pool, k, seed, task=task, balanced=False)


class CerberoShots(ContextSampler):
    """lm-eval few-shot sampler: the shots ``cerbero-hf evaluate`` draws for the same query and seed.

    lm-eval hands the query to a sampler only when the few-shot split is the test split, so every YAML says
    ``fewshot_split: test``; the pool is the task's ``shot_split`` all the same (SQuAD-it: ``train``).
    """

    def sample(self, n: int, eval_doc: dict | None = None, df=None, **kwargs) -> list[dict]:
        if n == 0:
            return []
        if eval_doc is None:
            raise ValueError("CerberoShots needs the query: set fewshot_split to the test split")
        query = Example(eval_doc["id"], eval_doc["input"], eval_doc["target"], tuple(eval_doc["golds"]))
        shots = _sampler(eval_doc["task"], eval_doc["data_dir"] or None, eval_doc["seed"], n).shots_for(query)
        return [{**eval_doc, "id": s.id, "input": s.input, "target": s.target, "golds": list(s.golds)}
                for s in shots]


def process_results_squad(doc: dict, results: list[str]) -> dict:
    answer = clean_answer(results[0], _STOP)
    return squad_metrics([answer], [doc["golds"]], articles=_SETTINGS["articles"])


def _process_results(name: str, doc: dict, results: list[str]) -> dict:
    labels = _SETTINGS["tasks"][name]["labels"]
    pred = parse_label(clean_answer(results[0], _STOP), labels)
    pair = (doc["target"], pred, tuple(labels))
    return {"accuracy": 100.0 * (pred == doc["target"]), "macro_f1": pair, "weighted_f1": pair}


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
