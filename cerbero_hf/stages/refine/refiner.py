"""The :class:`Refiner`: a list of rules over a corpus, rejected rows kept, a report, a Hub-layout folder.

Flow (``Refiner.run``):

1. One batched ``Dataset.map`` (``num_proc`` workers) reads each row from the input shape (``messages``
   rows, or a Fauno transcript column) and takes each batch through the rules, in list order: a
   formatter rewrites the rows still kept, a filter marks the ones it rejects with ``rule``/``reason``
   (later rules do not see them). Sequential filters only compute their keys here (message hashes).
2. Sequential filters (the duplicate-majority rule: the first KEPT copy wins) run afterwards in the main
   process, in corpus order, over those keys.
3. Kept rows form the ``default`` config, removed rows the ``rejected`` config; ``kept + rejected == input``.
   The report has one row per rule name, in the order of the list (:func:`~.rules.default_rules`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.languages import load_language
from cerbero_hf.schema import dump_meta, get_meta, row_problem
from cerbero_hf.stages.refine.report import Report
from cerbero_hf.stages.refine.rules import TRANSCRIPT, Formatter, default_rules, report_names, verdict

TEXT_COLUMNS = ("input", "text", "conversation", "transcript", "chat", "prompt")


def detect_text_column(ds, text_column: str | None, file: str | None = None) -> str | None:
    """``None`` for ``messages`` rows, else the transcript column; InputError when neither fits."""
    from datasets import Json, List, Value

    cols = ds.column_names
    if text_column:
        if text_column not in cols:
            raise InputError(f"no column {text_column!r} (columns: {', '.join(cols)})", file=file, column=text_column)
        if ds.features[text_column] != Value("string"):
            raise InputError(f"transcript column has type {ds.features[text_column]}, expected string",
                             file=file, column=text_column)
        return text_column
    if "messages" in cols:
        if not isinstance(ds.features["messages"], (List, Json)):
            raise InputError(f"has type {ds.features['messages']}, expected a list of {{role, content}}",
                             file=file, column="messages")
        return None
    for name in TEXT_COLUMNS:
        if name in cols:
            if ds.features[name] != Value("string"):
                raise InputError(f"transcript column has type {ds.features[name]}, expected string",
                                 file=file, column=name)
            return name
    raise InputError(f"no 'messages' column and no transcript column ({', '.join(TEXT_COLUMNS)}); "
                     f"columns: {', '.join(cols)}; pass --text-column", file=file, column="messages")


def read_row(raw: dict, index: int, text_column: str | None, source: str) -> dict:
    """One input row in the rules' shape: ``id, messages, source, meta`` (a dict), the transcript, a problem.

    Malformed input is recorded in ``problem`` (rejected by the ``schema`` rule) with its raw value kept in
    ``meta`` (``raw_meta``, ``raw_messages``, ``raw_text``); a row without an ``id`` gets ``row-<index>``.
    """
    rid = raw.get("id")
    rid = str(rid) if rid not in (None, "") and not isinstance(rid, (list, dict)) else f"row-{index}"
    src = raw.get("source") if isinstance(raw.get("source"), str) and raw.get("source") else source
    row = {"id": rid, "messages": [], "source": src or "", "meta": {}, TRANSCRIPT: None, "problem": None,
           "notes": {}}
    try:
        row["meta"] = get_meta(raw)
        if not isinstance(row["meta"], dict):
            raise ValueError
    except (TypeError, ValueError):
        row["meta"], row["problem"] = {"raw_meta": str(raw.get("meta"))}, "column 'meta': is not a JSON object"
    if text_column:
        text = raw.get(text_column)
        if not isinstance(text, str):
            row["problem"] = f"column {text_column!r}: not a string"
        elif row["problem"]:
            row["meta"]["raw_text"] = text  # rejected before tag repair: keep the transcript
        else:
            row[TRANSCRIPT] = text
    else:
        problem = row_problem({"id": rid, "messages": raw.get("messages")})
        if problem:
            row["problem"] = f"column {problem[0]!r}: {problem[1]}"
            row["meta"]["raw_messages"] = json.dumps(raw.get("messages"), ensure_ascii=False, default=str)
        else:
            row["messages"] = [{"role": m["role"], "content": m["content"]} for m in raw["messages"]]
    return row


class Refiner:
    """Run a list of refinement rules (paper §3.1) over a corpus.

    Input columns: ``messages`` (+ optional ``id``, ``source``, ``meta``) or one transcript column.
    Output: ``(kept, rejected, report)``; kept rows have the schema of ``schema.features()``, rejected rows
    add ``rule`` and ``reason``.

    Args:
        language: pack code or YAML path.
        lang_action: ``flag`` (the paper's choice), ``drop-message`` or ``drop-conversation``.
        text_column: the transcript column (auto-detected when None).
        num_proc: workers for the parallel rules.
        batch_size: rows per batch of the parallel map.
        use_lingua: False uses only the function-word first pass.
        source: ``source`` value for rows without one.
        rules: the rules, in order (default: :func:`~cerbero_hf.stages.refine.rules.default_rules`);
            sequential filters must come last.
    """

    def __init__(self, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
                 num_proc: int | None = None, batch_size: int = 500, use_lingua: bool = True, source: str = "",
                 rules: list | None = None):
        self.pack = load_language(language)
        self.lang_action = lang_action
        self.rules = default_rules(self.pack, lang_action=lang_action, use_lingua=use_lingua) if rules is None \
            else list(rules)
        flags = [getattr(rule, "sequential", False) for rule in self.rules]
        if any(flags) and not all(flags[flags.index(True):]):
            raise ValueError("sequential filters (e.g. DuplicateMajority) must come after every other rule")
        self.parallel = [r for r, seq in zip(self.rules, flags) if not seq]
        self.sequential = [r for r, seq in zip(self.rules, flags) if seq]
        self.counted = report_names([r for r in self.rules if isinstance(r, Formatter)])
        self.text_column, self.num_proc, self.batch_size, self.source = text_column, num_proc, batch_size, source
        self.timings: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        """The report's rows: each rule name once, in list order."""
        return report_names(self.rules)

    # -- step 1: the parallel rules -------------------------------------------------------------
    def process_batch(self, batch: dict, indices: list[int], text_column: str | None) -> dict:
        """Read one batch of input rows and take it through the parallel rules (see the module docstring)."""
        clock = time.perf_counter
        t0 = clock()
        rows = [read_row({k: batch[k][j] for k in batch}, index, text_column, self.source)
                for j, index in enumerate(indices)]
        self._tick("read", clock() - t0)
        rejected: list[tuple[str, str] | None] = [None] * len(rows)
        counts = {name: [0] * len(rows) for name in self.counted}
        live = list(range(len(rows)))
        for rule in self.parallel:
            t0 = clock()
            if isinstance(rule, Formatter):
                for j, n in zip(live, rule.format_rows([rows[j] for j in live])):
                    counts[rule.name][j] += n
            else:
                still = []
                for j in live:
                    reason = verdict(rule, rule.filter(rows[j]))
                    if reason is None:
                        still.append(j)
                    else:
                        rejected[j] = (rule.name, reason)
                live = still
            self._tick(rule.name, clock() - t0)
        out = {"id": [r["id"] for r in rows], "messages": [r["messages"] for r in rows],
               "source": [r["source"] for r in rows], "meta": [],
               "_rule": [x and x[0] for x in rejected], "_reason": [x and x[1] for x in rejected]}
        for i, rule in enumerate(self.sequential):
            t0 = clock()
            out[f"_key_{i}"] = [rule.key(rows[j]) if rejected[j] is None else [] for j in range(len(rows))]
            self._tick(rule.name, clock() - t0)
        for j, row in enumerate(rows):
            changed = {name: counts[name][j] for name in self.counted if counts[name][j]}
            if changed:
                row["meta"].setdefault("refine", {}).update(changed)
            out["meta"].append(dump_meta(row["meta"]))
        for name in self.counted:
            out[f"_n_{name}"] = counts[name]
        return out

    def _tick(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def _work_columns(self) -> dict:
        from datasets import List, Value

        return {"_rule": Value("string"), "_reason": Value("string"),
                **{f"_key_{i}": List(Value("int64")) for i in range(len(self.sequential))},
                **{f"_n_{name}": Value("int32") for name in self.counted}}

    def check_input(self, ds, file: str | None = None) -> str | None:
        """Raise InputError for an empty dataset or unusable columns; return the transcript column or None."""
        if len(ds) == 0:
            raise InputError("empty dataset (0 rows)", file=file)
        return detect_text_column(ds, self.text_column, file)

    # -- the whole run -----------------------------------------------------------------------------
    def run(self, ds, file: str | None = None):
        """Refine ``ds``; returns ``(kept, rejected, report)`` (datasets)."""
        import numpy as np
        from datasets import Dataset, Features

        from cerbero_hf.schema import features, rejected_features

        start = time.perf_counter()
        text_column = self.check_input(ds, file)
        work = features()
        work.update(self._work_columns())
        processed = ds.map(self.process_batch, batched=True, batch_size=self.batch_size, with_indices=True,
                           fn_kwargs={"text_column": text_column}, remove_columns=ds.column_names,
                           features=Features(work), num_proc=self.num_proc if (self.num_proc or 1) > 1 else None,
                           desc="Refining", load_from_cache_file=False)
        table = processed.data.table
        rules = table.column("_rule").to_pylist()
        reasons = table.column("_reason").to_pylist()
        for i, rule in enumerate(self.sequential):  # in corpus order, in this process
            t0 = time.perf_counter()
            rule.reset()
            for j, key in enumerate(table.column(f"_key_{i}").to_pylist()):
                if rules[j] is None:
                    reason = verdict(rule, rule.decide(key))
                    if reason is not None:
                        rules[j], reasons[j] = rule.name, reason
            self._tick(rule.name, time.perf_counter() - t0)
        report = Report(input_rows=len(ds), language=self.pack.code, lang_action=self.lang_action,
                        rules=self.names, changes={r.name: r.changes for r in self.rules if isinstance(r, Formatter)})
        for name in self.names:
            n = sum(r == name for r in rules)
            if n:
                report.removed[name] = n
        for name in self.counted:
            report.changed[name] = int(np.asarray(table.column(f"_n_{name}")).sum())
        mask = np.array([r is None for r in rules], dtype=bool)
        drop = list(self._work_columns())
        kept = processed.select(np.flatnonzero(mask)).remove_columns(drop).cast(features())
        rej = processed.select(np.flatnonzero(~mask)).remove_columns(drop)
        rej = rej.add_column("rule", [r for r in rules if r is not None])
        rej = rej.add_column("reason", [reasons[i] for i in np.flatnonzero(~mask)])
        rej = rej.cast(rejected_features()) if len(rej) else Dataset.from_dict(  # cast skips empty datasets
            {k: [] for k in rejected_features()}, features=rejected_features())
        report.seconds = time.perf_counter() - start
        return kept, rej, report

    def write(self, out, kept, rejected, report: Report, license: str = "unknown", title: str | None = None):
        """Write the Hub-layout folder: ``default`` (kept), ``rejected``, README card with the report."""
        from cerbero_hf.cards import stage_body
        from cerbero_hf.io import save_hub_folder

        title = title or f"Refined corpus ({self.pack.name})"
        body = stage_body(title, "Refined with cerbero-hf following the Fauno refinement of Cerbero-7B "
                                 "(arXiv 2311.15698, §3.1).",
                          configs=[("default", f"{len(kept)} kept conversations"),
                                   ("rejected", f"{len(rejected)} removed conversations with `rule` and `reason`")],
                          sections=[("", f"Language check action: `{report.lang_action}`."),
                                    ("Refinement report", report.markdown())])
        save_hub_folder(out, {"default": kept, "rejected": rejected}, body=body, pretty_name=title,
                        card_data={"language": [self.pack.code], "license": license,
                                   "tags": ["cerbero-hf", "conversational"]})
        (Path(out) / "refine_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(out)


def load_inputs(inputs: list[str]):
    """Load and concatenate ``inputs`` (anything ``io.load_table`` reads); returns ``(dataset, source)``.

    ``source``: the input's name (file stem or Hub dataset name) for rows without one. With several inputs,
    each one's rows without a ``source`` column get that input's name as a column.
    """
    from cerbero_hf.io import load_table

    names = [Path(str(spec)).stem for spec in inputs]
    tables = [load_table(spec) for spec in inputs]
    if len(tables) == 1:
        return tables[0], names[0]
    from datasets import concatenate_datasets

    tables = [t if "source" in t.column_names else t.add_column("source", [name] * len(t))
              for t, name in zip(tables, names)]
    try:
        return concatenate_datasets(tables), ""
    except ValueError as err:
        raise InputError(f"cannot refine these inputs together: {str(err).splitlines()[0]}",
                         file=", ".join(map(str, inputs))) from None


def refine(input, output, *, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
           num_proc: int | None = None, license: str = "unknown", use_lingua: bool = True) -> Report:
    """Load ``input`` (anything ``io.load_table`` reads), refine it and write ``output``; returns the report."""
    ds, source = load_inputs([input])
    refiner = Refiner(language, lang_action=lang_action, text_column=text_column, num_proc=num_proc,
                      use_lingua=use_lingua, source=source)
    kept, rejected, report = refiner.run(ds, file=str(input))
    refiner.write(output, kept, rejected, report, license=license)
    return report
