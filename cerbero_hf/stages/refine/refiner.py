"""The :class:`Refiner`: a list of rules over a corpus, rejected rows kept, a report, a Hub-layout folder.

Flow (``Refiner.stream``), one chunk of ``chunk_rows`` rows at a time, so memory stays flat however large
the corpus (only the duplicate rule's message hashes grow, 8 bytes each: :class:`~.rules.duplicates.HashStore`):

1. The chunk is read from the input's Arrow files (:meth:`~.reader.Part.chunks`) and cut into batches of
   ``batch_size`` rows. Each batch (in ``num_proc`` worker processes) is read from the input shape
   (``messages`` rows, or a Fauno transcript column) and taken through the rules, in list order: a
   formatter rewrites the rows still kept, a filter marks the ones it rejects with ``rule``/``reason``
   (later rules do not see them). Sequential filters only compute their keys here (message hashes).
2. Sequential filters (the duplicate-majority rule: the first KEPT copy wins) run afterwards in the main
   process, in corpus order, over those keys; their state carries over from chunk to chunk.
3. Kept rows are appended to the ``default`` output, removed rows, whichever rule removed them, to the
   ``rejected`` output with ``rule`` and ``reason``: ``kept + rejected == input``. The report has one row per
   rule name, in the order of the list (:func:`~.rules.default_rules`).

:meth:`Refiner.run` gives the two outputs as in-memory datasets (a corpus that fits in memory: tests,
notebooks); :meth:`Refiner.refine_to` (the stage, :func:`refine`) streams them to disk and writes the folder.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cerbero_hf.errors import InputError
from cerbero_hf.languages import load_language
from cerbero_hf.schema import COLUMNS, dump_meta
from cerbero_hf.stages.refine.reader import Part, detect_text_column, load_parts, read_row
from cerbero_hf.stages.refine.report import Report
from cerbero_hf.stages.refine.rules import Formatter, default_rules, report_names, verdict

PARTIAL = ".refine-partial"  # inside the output folder: the streamed rows before the final write


class Refiner:
    """Run a list of refinement rules (paper §3.1) over a corpus.

    Input columns: ``messages`` (+ optional ``id``, ``source``, ``meta``) or one transcript column.
    Output: ``(kept, rejected, report)``; kept rows have the schema of ``schema.features()``, rejected rows
    add ``rule`` and ``reason``.

    Args:
        language: pack code or YAML path.
        lang_action: ``flag`` (the paper's choice), ``drop-message`` or ``drop-conversation``.
        text_column: the transcript column (auto-detected when None).
        num_proc: worker processes for the parallel rules.
        batch_size: rows per batch of the parallel rules.
        use_lingua: False uses only the function-word first pass.
        source: ``source`` value for rows without one.
        rules: the rules, in order (default: :func:`~cerbero_hf.stages.refine.rules.default_rules`);
            sequential filters must come last.
        chunk_rows: rows read, refined and written at a time (memory grows with it, not with the corpus).

    Examples:
        >>> from datasets import Dataset
        >>> from cerbero_hf import Refiner
        >>> fauno = Dataset.from_list([{"input": "[|Umano|] Ciao, come stai? [|AI|] Bene, grazie!"}, {"input": "[|AI|] Ciao!"}])
        >>> kept, rejected, report = Refiner("it", use_lingua=False).run(fauno)
        >>> kept[0]["messages"]
        [{'role': 'user', 'content': 'Ciao, come stai?'}, {'role': 'assistant', 'content': 'Bene, grazie!'}]
        >>> rejected[0]["rule"], rejected[0]["reason"]
        ('turn_order', 'message 0 is assistant, expected user')
    """

    def __init__(self, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
                 num_proc: int | None = None, batch_size: int = 500, use_lingua: bool = True, source: str = "",
                 rules: list | None = None, chunk_rows: int = 20_000):
        self.pack = load_language(language)
        self.lang_action = lang_action
        self.rules = default_rules(self.pack, lang_action=lang_action, use_lingua=use_lingua) if rules is None \
            else list(rules)
        flags = [getattr(rule, "sequential", False) for rule in self.rules]
        if any(flags) and not all(flags[flags.index(True):]):
            raise ValueError("sequential filters (e.g. DuplicateMajority) must come after every other rule")
        self.parallel = [r for r, seq in zip(self.rules, flags) if not seq]
        self.sequential: list[Any] = [r for r, seq in zip(self.rules, flags) if seq]  # DuplicateMajority-like
        self.counted = report_names([r for r in self.rules if isinstance(r, Formatter)])
        self.text_column, self.num_proc, self.batch_size, self.source = text_column, num_proc, batch_size, source
        self.chunk_rows = max(1, int(chunk_rows))
        self.timings: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        """The report's rows: each rule name once, in list order."""
        return report_names(self.rules)

    # -- step 1: the parallel rules -------------------------------------------------------------
    def process_batch(self, batch: dict, indices: list[int], text_column: str | None, source: str | None = None) -> dict:
        """Read one batch of input rows and take it through the parallel rules (see the module docstring)."""
        clock = time.perf_counter
        t0 = clock()
        source = self.source if source is None else source
        rows = [read_row({k: batch[k][j] for k in batch}, index, text_column, source)
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

    def process_table(self, table, start: int, text_column: str | None, features, source: str | None = None):
        """:meth:`process_batch` on an Arrow table of input rows (row ``start`` of the corpus first); returns an
        Arrow table with the output columns and the work columns (``_rule``, ``_reason``, keys, counts)."""
        import pyarrow as pa

        batch = features.decode_batch(table.to_pydict())
        out = self.process_batch(batch, list(range(start, start + table.num_rows)), text_column, source)
        return pa.Table.from_pydict(out, schema=self._work_schema())

    def _tick(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def _work_schema(self):
        from datasets import Features, List, Value

        from cerbero_hf.schema import features

        work = features()
        work.update({"_rule": Value("string"), "_reason": Value("string"),
                     **{f"_key_{i}": List(Value("int64")) for i in range(len(self.sequential))},
                     **{f"_n_{name}": Value("int32") for name in self.counted}})
        return Features(work).arrow_schema

    def check_input(self, ds, file: str | None = None) -> str | None:
        """Raise InputError for an empty dataset (or :class:`Part`) or unusable columns; return the transcript
        column or None."""
        if len(ds) == 0:
            raise InputError("empty dataset (0 rows)", file=file)
        return detect_text_column(ds, self.text_column, file)

    # -- step 2 and 3, chunk by chunk ---------------------------------------------------------------
    def _finish_chunk(self, done, kept, rejected, removed: Counter, changed: Counter) -> None:
        """The sequential rules on one processed chunk, then its rows to ``kept`` and ``rejected``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rules, reasons = done.column("_rule").to_pylist(), done.column("_reason").to_pylist()
        for i, rule in enumerate(self.sequential):  # in corpus order, in this process
            t0 = time.perf_counter()
            keys = done.column(f"_key_{i}").to_pylist()
            live = [j for j, r in enumerate(rules) if r is None]
            for j, result in zip(live, rule.decide_many([keys[j] for j in live])):
                reason = verdict(rule, result)
                if reason is not None:
                    rules[j], reasons[j] = rule.name, reason
            self._tick(rule.name, time.perf_counter() - t0)
        removed.update(r for r in rules if r is not None)
        for name in self.counted:
            changed[name] += pc.sum(done.column(f"_n_{name}")).as_py() or 0
        keep = pa.array([r is None for r in rules])
        rows = done.select(list(COLUMNS))
        kept.write(rows.filter(keep).cast(kept.schema))
        out = rows.filter(pc.invert(keep))
        out = out.append_column("rule", pa.array([r for r in rules if r is not None], pa.string()))
        out = out.append_column("reason", pa.array([x for r, x in zip(rules, reasons) if r is not None], pa.string()))
        rejected.write(out.cast(rejected.schema))

    def stream(self, parts: list[Part], kept, rejected) -> Report:
        """Refine ``parts`` (one corpus, in order) chunk by chunk into the sinks ``kept`` and ``rejected``
        (objects with ``write(pyarrow.Table)`` and ``schema``); returns the report."""
        import pyarrow as pa
        from datasets.utils import tqdm as hf_tqdm

        from cerbero_hf.stages.refine.stream import Workers

        start = time.perf_counter()
        columns = [self.check_input(part, part.file) for part in parts]
        report = Report(input_rows=sum(len(part) for part in parts), language=self.pack.code,
                        lang_action=self.lang_action, rules=self.names,
                        changes={r.name: r.changes for r in self.rules if isinstance(r, Formatter)})
        removed, changed, offset = Counter[str](), Counter[str](), 0
        for rule in self.sequential:
            rule.reset()
        with Workers(self, self.num_proc) as workers, \
                hf_tqdm(total=report.input_rows, desc="Refining", unit=" examples") as bar:
            for part, text_column in zip(parts, columns):
                for chunk in part.chunks(self.chunk_rows):
                    tasks = [(chunk.slice(i, self.batch_size), offset + i, text_column, part.features, part.source)
                             for i in range(0, chunk.num_rows, self.batch_size)]
                    self._finish_chunk(pa.concat_tables(workers.map(tasks)), kept, rejected, removed, changed)
                    offset += chunk.num_rows
                    bar.update(chunk.num_rows)
        for rule in self.sequential:  # their state (the hashes of kept messages) is done with: free it
            rule.reset()
        report.removed = {name: removed[name] for name in self.names if removed[name]}
        report.changed = {name: changed[name] for name in self.counted}
        report.seconds = time.perf_counter() - start
        return report

    # -- the whole run -----------------------------------------------------------------------------
    def run(self, ds, file: str | None = None):
        """Refine ``ds`` in memory; returns ``(kept, rejected, report)`` (datasets)."""
        from cerbero_hf.schema import features, rejected_features
        from cerbero_hf.stages.refine.stream import TableSink

        kept, rejected = TableSink(features().arrow_schema), TableSink(rejected_features().arrow_schema)
        report = self.stream([Part(ds, self.source, file)], kept, rejected)
        return kept.dataset(), rejected.dataset(), report

    def refine_to(self, parts: list[Part], out, *, license: str = "unknown", on_event=None) -> Report:
        """Refine ``parts`` streaming their rows to disk (``out/.refine-partial/``, removed at the end) and write
        the Hub-layout folder ``out`` (:meth:`write`). ``on_event("writing", {kept, rejected})`` comes before the
        final write."""
        from cerbero_hf.schema import features, rejected_features
        from cerbero_hf.stages.refine.stream import FileSink

        for part in parts:  # bad input fails before anything is written
            self.check_input(part, part.file)
        work = Path(out) / PARTIAL
        work.mkdir(parents=True, exist_ok=True)
        try:
            kept = FileSink(work / "kept.arrow", features().arrow_schema)
            rejected = FileSink(work / "rejected.arrow", rejected_features().arrow_schema)
            try:
                report = self.stream(parts, kept, rejected)
            finally:
                kept.close()
                rejected.close()
            if on_event is not None:
                on_event("writing", {"kept": kept.rows, "rejected": rejected.rows})
            self.write(out, kept.dataset(), rejected.dataset(), report, license=license)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return report

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


def refine(input, output, *, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
           num_proc: int | None = None, license: str = "unknown", use_lingua: bool = True) -> Report:
    """Load ``input`` (anything ``io.load_table`` reads), refine it and write ``output``; returns the report.

    Examples:
        >>> from cerbero_hf import refine
        >>> report = refine("andreabac3/Quora-Italian-Fauno-Baize", "out/quora", lang_action="drop-message")  # doctest: +SKIP
    """
    parts = load_parts([input])
    refiner = Refiner(language, lang_action=lang_action, text_column=text_column, num_proc=num_proc,
                      use_lingua=use_lingua, source=parts[0].source)
    return refiner.refine_to(parts, output, license=license)
