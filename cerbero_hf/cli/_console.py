"""Console helpers shared by the commands (rich imported lazily by the callers' bodies)."""

from __future__ import annotations


def counts_table(title: str, counts: dict):
    """A two-column rich table of counts; nested mappings are shown as ``key value, ...``."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in counts.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(str(key), shown)
    return table
