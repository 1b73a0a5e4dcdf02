"""CLI options generated from config dataclasses: one declaration gives the flags and the recipe keys.

:func:`config_command` turns the fields of one or more stage configs into typer options (name, type,
default and help from :func:`cerbero_hf.config.setting`), adds the command's positional arguments and
any mode switches of its own, and calls the command body with the built (validated) configs::

    @config_command(app, "seeds", SeedsConfig, arguments=[("input", "OASST table ..."), ("output", "...")])
    def seeds(config: SeedsConfig, input: str, output: str) -> None: ...

A bad value is the same one-line input error (exit 2) as in a recipe, naming the flag.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING
from typing import Annotated, Any, Callable, Optional, Sequence

import typer

from cerbero_hf.config import _strip_optional, field_specs, from_dict
from cerbero_hf.errors import InputError


def flag_name(spec: dict) -> str:
    return spec["flag"] or "--" + spec["name"].replace("_", "-")


def cli_fields(*configs: type) -> list[dict]:
    """The field specs of ``configs`` that are CLI flags (in declaration order, first config wins)."""
    seen, specs = set(), []
    for cls in configs:
        for spec in field_specs(cls):
            if spec["cli"] and spec["name"] not in seen:
                seen.add(spec["name"])
                specs.append({**spec, "config": cls})
    return specs


def _option_type(tp: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The typer type for a config type; lists and mappings travel as strings parsed by the config loader."""
    base, _ = _strip_optional(tp)
    origin = typing.get_origin(base)
    if origin in (list, tuple, dict) or base in (list, tuple, dict) or base is Any:
        return Optional[str], lambda v: v
    if base is bool and tp is bool:
        return bool, lambda v: v
    if base in (int, float, str, bool):
        return Optional[base], lambda v: v
    return Optional[str], lambda v: v


def _metavar(tp: Any) -> str | None:
    """``--help``'s placeholder for a list (``INT,...``) or a mapping (``JSON``); ``None``: the type's own."""
    base, _ = _strip_optional(tp)
    args = [a for a in typing.get_args(base) if a is not type(None)]
    if typing.get_origin(base) in (list, tuple) or base in (list, tuple):
        return {int: "INT", float: "FLOAT"}.get(args[0] if args else str, "TEXT") + ",..."
    if dict in (base, typing.get_origin(base), *args):
        return "JSON"
    return None


def _default_text(default: Any) -> Any:
    if isinstance(default, (list, tuple)):
        return ",".join(str(v) for v in default)
    return default


OVERWRITE_HELP = "Write into a folder holding other files (kept), or written by another stage or with other settings."


def overwrite_switch() -> inspect.Parameter:
    """``--overwrite``: the one switch every command that writes a folder has (see :mod:`cerbero_hf.outputs`)."""
    return inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False,
                             annotation=Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)])


def config_command(app, name: str, *configs: type, arguments: Sequence[tuple] = (), extra: Sequence[inspect.Parameter] = (),
                   help: str | None = None, writes_folder: bool = False):
    """Register ``body(*configs, **arguments_and_extras)`` as command ``name`` with flags from ``configs``.

    ``arguments``: ``(name, help)``, ``(name, help, type, default)`` or ``(name, help, type, default, metavar)``
    positional arguments; ``--help`` shows each as its metavar (default: the name in upper case).
    ``extra``: additional ``inspect.Parameter`` objects (mode switches that are not stage settings).
    ``writes_folder``: the command writes an output folder: add ``--overwrite`` (passed to the body as
    ``overwrite=``), declared once here for every such command rather than as a setting of each config.
    """
    specs = cli_fields(*configs)

    def decorator(body: Callable) -> Callable:
        params: list[inspect.Parameter] = []
        for arg in arguments:
            arg_name, arg_help = arg[0], arg[1]
            arg_type = arg[2] if len(arg) > 2 else str
            default = arg[3] if len(arg) > 3 else inspect.Parameter.empty
            metavar = arg[4] if len(arg) > 4 else arg_name.upper()
            params.append(inspect.Parameter(arg_name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=Annotated[arg_type, typer.Argument(help=arg_help, metavar=metavar,
                                                                                          show_default=False)]))
        for spec in specs:
            tp, _ = _option_type(spec["type"])
            default = spec["default"]
            if _strip_optional(tp)[0] is bool:  # --flag/--no-flag; Optional[bool] stays None unless given
                names = [f"{flag_name(spec)}/--no-{flag_name(spec)[2:]}"]
            else:
                names = [flag_name(spec)]
            opt_default = None if default is MISSING else _default_text(default)
            choices = f" One of: {', '.join(map(str, spec['choices']))}." if spec.get("choices") else ""
            params.append(inspect.Parameter(
                spec["name"], inspect.Parameter.KEYWORD_ONLY, default=opt_default,
                annotation=Annotated[tp, typer.Option(*names, help=spec["help"] + choices, metavar=_metavar(spec["type"]),
                                                      show_default=opt_default not in (None, ""))]))
        params.extend(extra)
        if writes_folder:
            params.append(overwrite_switch())

        # each config's CLI fields (a flag two configs share, e.g. language, feeds both)
        fields_of = {cls: [s["name"] for s in field_specs(cls) if s["cli"]] for cls in configs}
        flags = {s["name"] for s in specs}

        def command(**kwargs):
            built = [build(cls, {name: kwargs[name] for name in names if kwargs.get(name) is not None})
                     for cls, names in fields_of.items()]
            return body(*built, **{k: v for k, v in kwargs.items() if k not in flags})

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # read by inspect.signature
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__doc__ = help or body.__doc__
        command.__name__ = name
        app.command(name)(command)
        command.configs = configs  # type: ignore[attr-defined]  # a function attribute: the tests read the flags' configs
        return command

    return decorator


def build(cls, values: dict):
    """Build ``cls`` from CLI values; errors name the flag (``--threshold``) instead of the recipe key."""
    try:
        return from_dict(cls, values)
    except InputError as err:
        column = err.column
        section = getattr(cls, "SECTION", "")
        if column and section and column.startswith(section + "."):
            field_name = column[len(section) + 1:]
            flag = next((flag_name(s) for s in field_specs(cls) if s["name"] == field_name), None)
            if flag:
                message = err.message.replace(column, flag)
                raise InputError(message, file=err.file, row=err.row) from None
        raise
