"""Errors the CLI turns into one line and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, and where known the row and column.

    ``str(err)`` is the one-line message the CLI prints.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None):
        self.message, self.file, self.row, self.column = message, file, row, column
        where = [f"file {file}"] if file else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
