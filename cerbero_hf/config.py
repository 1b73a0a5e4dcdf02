"""One way to declare a setting, and one loader from YAML/CLI values into a config dataclass.

A stage's settings are the fields of one dataclass. Each field is declared with :func:`setting`: its
type (the annotation), its default, its help text and its checks (choices, ranges). That one declaration
gives the recipe's YAML keys (:func:`from_dict`), the stage's CLI flags (``cerbero_hf.cli._config``) and
the Python constructor. Validation runs in ``__post_init__`` (:class:`Config`), so a bad value is an
:class:`~cerbero_hf.errors.InputError` naming the key whichever way the config was built::

    @dataclass
    class FilterConfig(Config):
        SECTION = "filter"
        max_nll: float = setting(2.0, help="Keep messages with NLL strictly below this.", gt=0)

    FilterConfig(max_nll=-1)              # InputError: column 'filter.max_nll': ... must be > 0, got -1
    from_dict(FilterConfig, {"max_nl": 1}) # InputError: unknown setting filter.max_nl
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, field
from typing import Any, ClassVar

from cerbero_hf.errors import InputError


def setting(default: Any = MISSING, *, help: str, choices: tuple | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, item_ge: float | None = None,
            default_factory: Any = MISSING, cli: bool = True, flag: str | None = None) -> Any:
    """A config field: default, help text and checks declared once.

    Args:
        default / default_factory: the default (``default_factory`` for lists).
        help: one line, shown by ``--help`` and in the docs.
        choices: allowed values. ge / gt / le: numeric bounds. item_ge: lower bound for each list item.
        cli: ``False`` for settings only a recipe or Python caller can give (e.g. nested mappings).
        flag: the CLI flag when it differs from ``--<name-with-dashes>``.
    """
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "item_ge": item_ge, "cli": cli,
            "flag": flag}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _choice_text(choices) -> str:
    items = [str(c) for c in choices]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


class Config:
    """Base of every stage config: checks each field's declared choices and ranges after construction."""

    SECTION: ClassVar[str] = ""
    # set by @dataclass on every subclass; declared here so type checkers know a Config is a dataclass
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        check(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def key_of(cfg_or_cls, name: str) -> str:
    section = getattr(cfg_or_cls, "SECTION", "")
    return f"{section}.{name}" if section else name


def check(cfg) -> None:
    """Raise :class:`InputError` for the first field outside its declared choices or range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        meta = f.metadata
        if value is None or not meta:
            continue
        key = key_of(cfg, f.name)
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise InputError(f"{key} must be {_choice_text(meta['choices'])}, got {value!r}", column=key)
        for bound, op, text in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                                ("le", lambda v, b: v <= b, "<=")):
            limit = meta.get(bound)
            if limit is not None and isinstance(value, (int, float)) and not op(value, limit):
                raise InputError(f"{key} must be {text} {limit:g}, got {value!r}", column=key)
        if meta.get("item_ge") is not None and isinstance(value, (list, tuple)):
            low = [v for v in value if isinstance(v, (int, float)) and v < meta["item_ge"]]
            if low:
                raise InputError(f"{key} items must be >= {meta['item_ge']:g}, got {low[0]!r}", column=key)


def type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (from YAML or a CLI string) as type ``tp``, or an :class:`InputError` naming ``key``."""
    base, optional = _strip_optional(tp)
    if value is None:
        if optional or type(None) in typing.get_args(tp):  # Optional[X], or a union with None (TRL's fields)
            return None
        raise InputError(f"{key} must not be empty", column=key)
    origin = typing.get_origin(base)
    if origin in (list, tuple) or base in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{key} must be a list, got {value!r}", column=key)
        args = typing.get_args(base)
        item = args[0] if args else Any
        return [coerce(v, item, key) for v in value]
    if base is Any or origin is dict or base is dict:
        if (origin is dict or base is dict) and not isinstance(value, dict):
            raise InputError(f"{key} must be a mapping, got {value!r}", column=key)
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise InputError(f"{key} must be true or false, got {value!r}", column=key)
    if base is int:
        if isinstance(value, bool):
            raise InputError(f"{key} must be an integer, got {value!r}", column=key)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise InputError(f"{key} must be an integer, got {value!r}", column=key) from None
    if base is float:
        if isinstance(value, bool):
            raise InputError(f"{key} must be a number, got {value!r}", column=key)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be a number, got {value!r}", column=key) from None
    if base is str:
        if isinstance(value, (dict, list)):
            raise InputError(f"{key} must be a string, got {value!r}", column=key)
        return str(value)
    return value


def from_dict(cls, data: dict | None, *, file: str | None = None, defaults: dict | None = None):
    """Build config ``cls`` from a mapping: unknown keys, wrong types and bad values are one-line errors.

    ``defaults`` fill keys the mapping does not set (the recipe's top-level ``language`` and ``seed``).
    """
    section = getattr(cls, "SECTION", "")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"section {section!r} must be a mapping", file=file, column=section or None)
    hints = type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        key = key_of(cls, unknown[0])
        raise InputError(f"unknown setting {key}", file=file, column=key)
    merged = {k: v for k, v in (defaults or {}).items() if k in names and k not in data}
    merged.update(data)
    try:
        kwargs = {k: coerce(v, hints[k], key_of(cls, k)) for k, v in merged.items()}
        return cls(**kwargs)
    except InputError as err:
        if file and err.file is None:
            raise InputError(err.message, file=file, row=err.row, column=err.column) from None
        raise


def field_specs(cls) -> list[dict]:
    """Every field's name, type, default and help (what the CLI builder and the docs read)."""
    hints = type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        specs.append({"name": f.name, "type": hints[f.name], "default": default, "help": f.metadata.get("help", ""),
                      "cli": f.metadata.get("cli", True), "flag": f.metadata.get("flag"),
                      "choices": f.metadata.get("choices")})
    return specs


def load_yaml(path, what: str = "recipe") -> dict:
    """A YAML mapping from ``path``; unreadable or malformed files are one-line input errors."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError(f"no such {what} file", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse {what}: {str(err).splitlines()[0]}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError(f"a {what} must be a YAML mapping", file=str(path))
    return data
