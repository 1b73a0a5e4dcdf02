"""The refinement report: per rule (in the order of the rule list), conversations removed and messages changed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """What a :class:`~cerbero_hf.stages.refine.refiner.Refiner` run removed and changed.

    Attributes:
        input_rows: rows read.
        removed: rule name -> conversations removed (rules that removed none are absent).
        changed: formatter name -> messages changed (every formatter, zeros included).
        rules: the report's rows: each rule name once, in the order of the rule list.
        changes: formatter name -> what its count means (the footnote of :meth:`markdown`).
        seconds: run time (reading and rules; writing not included).
        language / lang_action: the language pack code and the language check's action.
    """

    input_rows: int = 0
    removed: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)
    changes: dict = field(default_factory=dict)
    seconds: float = 0.0
    language: str = ""
    lang_action: str = "flag"

    @property
    def kept(self) -> int:
        return self.input_rows - sum(self.removed.values())

    def rows(self) -> list[tuple[str, int, int]]:
        """``(rule, conversations removed, messages changed)`` per rule, in the rule list's order."""
        return [(r, self.removed.get(r, 0), self.changed.get(r, 0)) for r in self.rules]

    def markdown(self) -> str:
        lines = ["| rule | conversations removed | messages changed |", "|---|---:|---:|"]
        lines += [f"| {r} | {n} | {c} |" for r, n, c in self.rows()]
        lines.append(f"| **total** | {sum(self.removed.values())} of {self.input_rows} | "
                     f"{sum(self.changed.values())} |")
        notes = "; ".join(f"{name} = {text}" for name, text in self.changes.items())
        lines.append(f"\nMessages changed: {notes}. Counts cover every row the rule saw.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"input_rows": self.input_rows, "kept": self.kept, "removed": dict(self.removed),
                "changed": dict(self.changed), "rules": list(self.rules), "seconds": round(self.seconds, 2),
                "language": self.language, "lang_action": self.lang_action}
