"""Errors the CLI turns into one line and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, and where known the row and column.

    ``str(err)`` is the one-line message the CLI prints.

    Examples:
        >>> from cerbero_hf import InputError
        >>> str(InputError("not a JSON object", file="corpus.jsonl", row=3))
        'file corpus.jsonl, row 3: not a JSON object'
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None):
        self.message, self.file, self.row, self.column = message, file, row, column
        where = [f"file {file}"] if file else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def missing_extra(module: str, extra: str) -> str:
    """The hint for an optional dependency that is not installed: ``<module> is not installed: pip install ...``."""
    return f"{module} is not installed: pip install 'cerbero-hf[{extra}]'"


def has_module(module: str) -> bool:
    """True when ``module`` (an optional dependency) can be imported, without importing it."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str, what: str):
    """Import the optional dependency ``module`` (of the extra ``extra``) for ``what``, or raise a one-line
    :class:`InputError` that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise  # the module is there but something it imports is broken: show that error
        raise InputError(f"{what}: {missing_extra(module, extra)}") from None
