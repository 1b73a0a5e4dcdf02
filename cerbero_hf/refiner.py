"""The :class:`Refiner`: every METHOD.md §4 rule over a corpus, rejected rows kept, a report, a Hub folder.

Flow (``Refiner.run``):

1. One batched ``Dataset.map`` (``num_proc`` workers) takes each row from the input shape (``messages``
   rows, or a Fauno transcript column) through: schema check, tag repair, empty conversations, system
   prompts, turn order, language check; it marks removed rows with ``rule``/``reason`` and precomputes the
   message hashes.
2. The duplicate-majority rule is sequential (the first KEPT copy wins), so it runs afterwards in the main
   process in one pass over the hashes of the surviving rows.
3. Kept rows form the ``default`` config, removed rows the ``rejected`` config; ``kept + rejected == input``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from cerbero_hf.errors import InputError
from cerbero_hf.languages import load_language
from cerbero_hf.refine import (DuplicateMajority, EmptyConversation, LanguageCheck, SystemPrompts, TagRepair,
                               TurnOrder, message_hashes)
from cerbero_hf.schema import dump_meta, get_meta, row_problem

TEXT_COLUMNS = ("input", "text", "conversation", "transcript", "chat", "prompt")
COUNTED = ("tag_repair", "system_prompt", "turn_order", "language")
REPORT_ORDER = ("schema", "tag_repair", "empty", "system_prompt", "turn_order", "language", "duplicates")
_WORK = ("_rule", "_reason", "_hashes") + tuple(f"_n_{r}" for r in COUNTED)


@dataclass
class Report:
    """Refinement report: per rule, conversations removed and messages changed."""

    input_rows: int = 0
    removed: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)
    seconds: float = 0.0
    language: str = ""
    lang_action: str = "flag"

    @property
    def kept(self) -> int:
        return self.input_rows - sum(self.removed.values())

    def rows(self) -> list[tuple[str, int, int]]:
        return [(r, self.removed.get(r, 0), self.changed.get(r, 0)) for r in REPORT_ORDER]

    def markdown(self) -> str:
        lines = ["| rule | conversations removed | messages changed |", "|---|---:|---:|"]
        lines += [f"| {r} | {n} | {c} |" for r, n, c in self.rows()]
        lines.append(f"| **total** | {sum(self.removed.values())} of {self.input_rows} | "
                     f"{sum(self.changed.values())} |")
        lines.append("\nMessages changed: tag_repair = role tags repaired; system_prompt = system messages (headers) "
                     "removed; turn_order = non-empty trailing user turns trimmed; language = messages flagged "
                     "(or dropped, with `drop-message`) as another language. Counts cover every row the rule saw.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"input_rows": self.input_rows, "kept": self.kept, "removed": dict(self.removed),
                "changed": dict(self.changed), "seconds": round(self.seconds, 2), "language": self.language,
                "lang_action": self.lang_action}


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


class Refiner:
    """Run all refinement rules (METHOD.md §4) over a corpus.

    Input columns: ``messages`` (+ optional ``id``, ``source``, ``meta``) or one transcript column.
    Output: ``(kept, rejected, report)``; kept rows have the schema of ``schema.features()``, rejected rows
    add ``rule`` and ``reason``.

    Args:
        language: pack code or YAML path.
        lang_action: ``flag`` (D19 default), ``drop-message`` or ``drop-conversation``.
        text_column: the transcript column (auto-detected when None).
        num_proc: workers for the parallel rules.
        batch_size: rows per batch of the parallel map.
        use_lingua: False uses only the function-word first pass.
        source: ``source`` value for rows without one.
    """

    def __init__(self, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
                 num_proc: int | None = None, batch_size: int = 500, use_lingua: bool = True, source: str = ""):
        self.pack = load_language(language)
        self.lang = LanguageCheck(self.pack, action=lang_action, use_lingua=use_lingua)
        self.text_column, self.num_proc, self.batch_size, self.source = text_column, num_proc, batch_size, source
        self.timings: dict[str, float] = {}

    # -- step 1: the parallel rules -------------------------------------------------------------
    def process_batch(self, batch: dict, indices: list[int], text_column: str | None) -> dict:
        """Take one batch of input rows through every parallel rule (see module docstring)."""
        n = len(indices)
        out = {k: [] for k in ("id", "messages", "source", "meta", *_WORK)}
        live = []  # (position in out, messages)
        clock = time.perf_counter
        for j in range(n):
            t0 = clock()
            row = {k: batch[k][j] for k in batch}
            rid = row.get("id")
            rid = str(rid) if rid not in (None, "") and not isinstance(rid, (list, dict)) else f"row-{indices[j]}"
            src = row.get("source") if isinstance(row.get("source"), str) and row.get("source") else self.source
            counts = dict.fromkeys(COUNTED, 0)
            rule = reason = None
            try:
                meta = get_meta(row)
                if not isinstance(meta, dict):
                    raise ValueError
            except (TypeError, ValueError):
                meta, rule, reason = {"raw_meta": str(row.get("meta"))}, "schema", "column 'meta': is not a JSON object"
            messages, meta_problem = [], rule
            rule = None
            if text_column:
                text = row.get(text_column)
                if not isinstance(text, str):
                    rule, reason = "schema", f"column {text_column!r}: not a string"
                else:
                    messages, counts["tag_repair"] = TagRepair(self.pack).apply(text)
            else:
                problem = row_problem({"id": rid, "messages": row.get("messages")})
                if problem:
                    rule, reason = "schema", f"column {problem[0]!r}: {problem[1]}"
                    meta["raw_messages"] = json.dumps(row.get("messages"), ensure_ascii=False, default=str)
                else:
                    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
            if meta_problem and rule is None:
                rule, reason = "schema", "column 'meta': is not a JSON object"
            t1 = clock()
            self._tick("tag_repair", t1 - t0)
            if rule is None:
                keep = EmptyConversation().filter({"messages": messages})
                if keep is not True:
                    rule, reason = "empty", keep[1]
            t2 = clock()
            self._tick("empty", t2 - t1)
            if rule is None:
                messages, counts["system_prompt"] = SystemPrompts().apply(messages)
                messages, counts["turn_order"] = TurnOrder().apply(messages)
                keep = TurnOrder().filter({"messages": messages})
                if keep is not True:
                    rule, reason = "turn_order", keep[1]
                else:
                    live.append((j, messages))
            self._tick("system_prompt+turn_order", clock() - t2)
            out["id"].append(rid)
            out["messages"].append(messages)
            out["source"].append(src or "")
            out["meta"].append(meta)
            out["_rule"].append(rule)
            out["_reason"].append(reason)
            for r in COUNTED:
                out[f"_n_{r}"].append(counts[r])
        t3 = clock()
        flags = self.lang.verdicts([m for _, m in live])
        for (j, messages), f in zip(live, flags):
            new, nflag = self.lang.apply_flags(messages, f)
            out["_n_language"][j] = nflag
            if any(f):
                out["meta"][j]["foreign_language"] = f
            if self.lang.action == "drop-conversation" and any(f):
                out["_rule"][j] = "language"
                out["_reason"][j] = f"{sum(f)} of {len(f)} messages detected as another language"
            elif len(new) < 2:
                out["_rule"][j], out["_reason"][j] = "language", "no exchange left after dropping foreign messages"
            out["messages"][j] = new
        t4 = clock()
        self._tick("language", t4 - t3)
        out["_hashes"] = [message_hashes(m) if r is None else [] for m, r in zip(out["messages"], out["_rule"])]
        self._tick("hashing", clock() - t4)
        for j in range(n):
            meta = out["meta"][j]
            changed = {r: out[f"_n_{r}"][j] for r in COUNTED if out[f"_n_{r}"][j]}
            if changed:
                meta.setdefault("refine", {}).update(changed)
            out["meta"][j] = dump_meta(meta)
        return out

    def _tick(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def check_input(self, ds, file: str | None = None) -> str | None:
        """Raise InputError for an empty dataset or unusable columns; return the transcript column or None."""
        if len(ds) == 0:
            raise InputError("empty dataset (0 rows)", file=file)
        return detect_text_column(ds, self.text_column, file)

    # -- the whole run -----------------------------------------------------------------------------
    def run(self, ds, file: str | None = None):
        """Refine ``ds``; returns ``(kept, rejected, report)`` (datasets)."""
        import numpy as np
        from datasets import Features, List, Value

        from cerbero_hf.schema import features, rejected_features

        start = time.perf_counter()
        text_column = self.check_input(ds, file)
        work = features()
        work.update({"_rule": Value("string"), "_reason": Value("string"), "_hashes": List(Value("int64")),
                     **{f"_n_{r}": Value("int32") for r in COUNTED}})
        processed = ds.map(self.process_batch, batched=True, batch_size=self.batch_size, with_indices=True,
                           fn_kwargs={"text_column": text_column}, remove_columns=ds.column_names,
                           features=Features(work), num_proc=self.num_proc if (self.num_proc or 1) > 1 else None,
                           desc="Refining", load_from_cache_file=False)
        t0 = time.perf_counter()
        table = processed.data.table
        rules = table.column("_rule").to_pylist()
        reasons = table.column("_reason").to_pylist()
        dedup = DuplicateMajority()
        for i, hashes in enumerate(table.column("_hashes").to_pylist()):
            if rules[i] is None:
                keep = dedup.decide(hashes)
                if keep is not True:
                    rules[i], reasons[i] = "duplicates", keep[1]
        self._tick("duplicates", time.perf_counter() - t0)
        report = Report(input_rows=len(ds), language=self.pack.code, lang_action=self.lang.action)
        for r in rules:
            if r is not None:
                report.removed[r] = report.removed.get(r, 0) + 1
        for r in COUNTED:
            report.changed[r] = int(np.asarray(table.column(f"_n_{r}")).sum())
        mask = np.array([r is None for r in rules])
        kept = processed.select(np.flatnonzero(mask)).remove_columns(list(_WORK)).cast(features())
        rej = processed.select(np.flatnonzero(~mask)).remove_columns(list(_WORK))
        rej = rej.add_column("rule", [r for r in rules if r is not None])
        rej = rej.add_column("reason", [reasons[i] for i in np.flatnonzero(~mask)])
        rej = rej.cast(rejected_features())
        report.seconds = time.perf_counter() - start
        return kept, rej, report

    def write(self, out, kept, rejected, report: Report, license: str = "unknown", title: str | None = None):
        """Write the Hub-layout folder: ``default`` (kept), ``rejected``, README card with the report."""
        from cerbero_hf.io import save_hub_folder

        title = title or f"Refined corpus ({self.pack.name})"
        body = (f"# {title}\n\nRefined with cerbero-hf following the Fauno refinement of Cerbero-7B "
                f"(arXiv 2311.15698, §3.1). Config `default`: {len(kept)} kept conversations; config "
                f"`rejected`: {len(rejected)} removed conversations with `rule` and `reason`.\n\n"
                f"Language check action: `{report.lang_action}`.\n\n## Refinement report\n\n{report.markdown()}\n")
        save_hub_folder(out, {"default": kept, "rejected": rejected}, body=body, pretty_name=title,
                        card_data={"language": [self.pack.code], "license": license,
                                   "tags": ["cerbero-hf", "conversational"]})
        (Path(out) / "refine_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(out)


def refine(input, output, *, language: str = "it", lang_action: str = "flag", text_column: str | None = None,
           num_proc: int | None = None, license: str = "unknown", use_lingua: bool = True) -> Report:
    """Load ``input`` (anything ``io.load_table`` reads), refine it and write ``output``; returns the report."""
    from cerbero_hf.io import load_table

    ds = load_table(input)
    refiner = Refiner(language, lang_action=lang_action, text_column=text_column, num_proc=num_proc,
                      use_lingua=use_lingua, source=Path(str(input)).stem)
    kept, rejected, report = refiner.run(ds, file=str(input))
    refiner.write(output, kept, rejected, report, license=license)
    return report
