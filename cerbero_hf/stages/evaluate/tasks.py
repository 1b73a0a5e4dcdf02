"""The evaluation tasks (paper §4.2): settings and examples.

Settings come from the language's evaluation file (``cerbero_hf/data/eval/tasks-<code>.yaml``, or a
language pack's ``extra["evaluation"]``), deep-merged with an optional user YAML. Each task is
loaded with :func:`cerbero_hf.io.load_table`: by Hub id through the real ``load_dataset`` (defaults:
``crux82/squad_it``, ``RiTA-nlp/UINAUIL`` configs ``sentipolc``/``ironita``, ``RiTA-nlp/ami_2020``) or,
with ``data_dir``, from ``<data_dir>/<task>/`` (train/test files or a Hub-layout folder).

Every example becomes an :class:`Example` with ``input`` (the user turn), ``target`` (the answer a
shot shows) and ``golds`` (what the prediction is scored against). Classification rows whose label is
not in ``label_map`` (e.g. neutral tweets under the binary protocol) are skipped and counted. A value of
the wrong type (a list where the text belongs, answers given as one string, a list as a label) is an
:class:`InputError` naming the split's file, the row and the column: a benchmark is never scored on data
converted to text behind the user's back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.languages import LanguagePack, load_language

DATA = Path(__file__).resolve().parents[2] / "data" / "eval"
TASKS = ("squad_it", "sentipolc", "ironita", "ami2020")


@dataclass(frozen=True)
class Example:
    """One task item: ``input`` is the user turn, ``target`` the answer a shot shows."""

    id: str
    input: str
    target: str
    golds: tuple[str, ...]


@dataclass
class TaskConfig:
    """One task's settings (see ``tasks-it.yaml`` for the defaults and their sources).

    Examples:
        >>> from cerbero_hf import evaluation_settings, task_configs
        >>> sentipolc, = task_configs(["sentipolc"], evaluation_settings("it"))
        >>> sentipolc.dataset, sentipolc.config, sentipolc.shots, sentipolc.labels
        ('RiTA-nlp/UINAUIL', 'sentipolc', 5, ['POSITIVO', 'NEGATIVO'])
    """

    name: str
    kind: str  # "squad" | "classification"
    dataset: str
    config: str | None
    eval_split: str
    shot_split: str
    shots: int
    max_new_tokens: int
    columns: dict
    labels: list[str] = field(default_factory=list)
    label_map: dict = field(default_factory=dict)
    instruction: str | None = None
    confirmation: str | None = None
    balanced: bool = False

    def describe(self) -> dict:
        """The settings recorded in the results file."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items()}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"cannot read evaluation settings: {str(err).splitlines()[0]}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("evaluation settings must be a YAML mapping", file=str(path))
    return data


def evaluation_settings(language: str | LanguagePack = "it", override: str | Path | dict | None = None) -> dict:
    """The language's evaluation settings (articles, Camoscio template, tasks), with ``override`` merged in.

    Examples:
        >>> from cerbero_hf import evaluation_settings
        >>> settings = evaluation_settings("it", {"tasks": {"squad_it": {"shots": 1}}})
        >>> sorted(settings["tasks"]), settings["tasks"]["squad_it"]["shots"]
        (['ami2020', 'ironita', 'sentipolc', 'squad_it'], 1)
    """
    pack = load_language(language)
    extra = pack.extra.get("evaluation") if pack.extra else None
    if isinstance(extra, dict):
        base = extra
    elif extra:
        base = _read_yaml(Path(extra))
    else:
        path = DATA / f"tasks-{pack.code}.yaml"
        if not path.exists():
            raise InputError(f"no evaluation settings for language {pack.code!r}: write {path.name} or set "
                             f"extra['evaluation'] in the language pack")
        base = _read_yaml(path)
    if override is not None:
        base = _merge(base, override if isinstance(override, dict) else _read_yaml(Path(override)))
    return base


def task_configs(names, settings: dict, *, data_dir: str | Path | None = None, shots: dict | None = None,
                 balanced: bool = False, instruction: bool = False) -> list[TaskConfig]:
    """Build the :class:`TaskConfig` of each named task.

    Args:
        names: task names (keys of ``settings["tasks"]``).
        data_dir: read ``<data_dir>/<task>/`` instead of the Hub (same columns as the Hub copy).
        shots: per-task shot counts overriding the defaults (3 for SQuAD-it, 5 for EVALITA).
        balanced: draw class-balanced shots for classification tasks.
        instruction: keep the instruction turn (benchita style); off by default, as in the paper.

    Examples:
        >>> from cerbero_hf import evaluation_settings, task_configs
        >>> [(t.name, t.shots) for t in task_configs(["squad_it", "ironita"], evaluation_settings("it"), shots={"ironita": 3})]
        [('squad_it', 3), ('ironita', 3)]
    """
    known = settings.get("tasks", {})
    out = []
    for name in names:
        if name not in known:
            raise InputError(f"unknown task {name!r}; known: {', '.join(known)}")
        spec = copy.deepcopy(known[name])
        if data_dir is not None:
            folder = Path(data_dir) / name
            if not folder.exists():
                raise InputError(f"no data for task {name!r}", file=str(folder))
            spec["dataset"], spec["config"] = str(folder), None
        if shots and name in shots:
            spec["shots"] = int(shots[name])
        spec.setdefault("balanced", balanced and spec.get("kind") == "classification")
        if not instruction:
            spec["instruction"] = spec["confirmation"] = None
        try:
            out.append(TaskConfig(name=name, **spec))
        except TypeError as err:
            raise InputError(f"bad settings for task {name!r}: {err}") from None
    return out


def _label_key(row: dict, column) -> str:
    if isinstance(column, (list, tuple)):
        return "".join(str(row[c]) for c in column)
    return str(row[column])


def split_file(dataset: str, split: str) -> str:
    """The one file of ``split`` in a local task folder (``test.jsonl``, ``data/test-*.parquet``, ...), so that
    errors name it; ``dataset`` itself when it is not a folder or the split spans several files."""
    from cerbero_hf.io import FILE_FORMATS

    folder = Path(dataset)
    if not folder.is_dir():
        return dataset
    found = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in FILE_FORMATS and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)
             and (p.stem == split or p.stem.startswith((f"{split}-", f"{split}_"))
                  or split in p.relative_to(folder).parts[:-1])]
    return str(found[0]) if len(found) == 1 else dataset


def _check_value(task: TaskConfig, file: str, i: int, column: str, value, expected: str) -> None:
    """Raise InputError when ``value`` is not of the ``expected`` kind: ``string``, or ``label`` (a string, a
    number or null; a null label is unmapped, so its row is skipped and counted)."""
    from cerbero_hf.io import value_kind

    if expected == "string" and not isinstance(value, str):
        raise InputError(f"task {task.name}: {column} is {value_kind(value) or 'null'}, expected a string",
                         file=file, row=i, column=column)
    if expected == "label" and value is not None and not isinstance(value, (str, int, float)):
        raise InputError(f"task {task.name}: {column} is {value_kind(value) or 'null'}, expected a string or a "
                         f"number", file=file, row=i, column=column)


def _gold_texts(task: TaskConfig, file: str, i: int, column: str, answers) -> tuple[str, ...]:
    """SQuAD answers (``{"text": [...], ...}`` or a list of strings) -> the non-empty gold strings."""
    from cerbero_hf.io import value_kind

    texts, where = (answers.get("text"), f"{column}.text") if isinstance(answers, dict) else (answers, column)
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        kind = value_kind(texts) if not isinstance(texts, (list, tuple)) else "a list holding " + next(
            value_kind(t) or "null" for t in texts if not isinstance(t, str))
        raise InputError(f"task {task.name}: {where} is {kind}, expected a list of strings", file=file, row=i,
                         column=column)
    return tuple(t for t in texts if t.strip())


def load_examples(task: TaskConfig, split: str) -> tuple[list[Example], int]:
    """Read one split of a task. Returns (examples, number of rows skipped for an unmapped label).

    Raises :class:`InputError` (file, row, column) for unreadable files, missing columns, values of the
    wrong type and SQuAD rows without a gold answer.
    """
    from cerbero_hf.io import load_table

    ds = load_table(task.dataset, config=task.config, split=split)
    file = split_file(task.dataset, split)
    cols = task.columns
    needed = [c for key, c in cols.items() if key != "id"]
    needed = [x for c in needed for x in (c if isinstance(c, (list, tuple)) else [c])]
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise InputError(f"task {task.name}: missing column(s) {', '.join(missing)} in split {split!r}",
                         file=file, column=missing[0])
    examples, skipped = [], 0
    for i, row in enumerate(ds):
        if cols.get("id") in row:
            _check_value(task, file, i, cols["id"], row[cols["id"]], "label")
        ident = str(row[cols["id"]]) if cols.get("id") in row else f"{task.name}-{split}-{i}"
        if task.kind == "squad":
            for key in ("context", "question"):
                _check_value(task, file, i, cols[key], row[cols[key]], "string")
            texts = _gold_texts(task, file, i, cols["answers"], row[cols["answers"]])
            if not texts:
                raise InputError(f"task {task.name}: no gold answer", file=file, row=i, column=cols["answers"])
            text = f"{row[cols['context']]}\n{row[cols['question']]}"
            examples.append(Example(ident, text, texts[0], texts))
        else:
            _check_value(task, file, i, cols["text"], row[cols["text"]], "string")
            for column in cols["label"] if isinstance(cols["label"], (list, tuple)) else [cols["label"]]:
                _check_value(task, file, i, column, row[column], "label")
            key = _label_key(row, cols["label"])
            word = task.label_map.get(key, key if key in task.labels else None)
            if word is None:
                skipped += 1
                continue
            if word not in task.labels:
                raise InputError(f"task {task.name}: label_map gives {word!r}, not one of {task.labels}")
            examples.append(Example(ident, row[cols["text"]], word, (word,)))
    return examples, skipped
