"""``--help`` in click's plain style, readable at 80 columns: every name whole, a metavar only where a value goes.

The ecosystem's command lines (click, argparse, ``hf``, TRL's scripts) print plain help: ``Usage:``, the
description, then ``Arguments:`` and ``Options:`` as two columns, wrapped to the terminal and at most 80 columns
wide (click's limit), the same on a terminal and in a pipe. typer's rich panels at 80 columns cut long option
names (``--ray-cpus-per-work…``) and defaults, read ``[ray]`` in help text as markup and drop it, squeeze the help
into a narrow column and show ``<bool>`` on switches and ``<list[str]>`` on repeatable options. Here:

* positional arguments read ``INPUT OUTPUT``, ``[INPUT]``, ``INPUT...`` (the declared ``metavar`` or the name in
  upper case, no type), in the usage line and in their section;
* an option that takes a value shows its ``metavar`` or its type (``TEXT``, ``INT``, ``FLOAT``, ``PATH``); a
  switch shows none (``--resume / --no-resume``); a default follows the help as ``[default: ...]``;
* the name column is at most :data:`NAME_COLUMN` wide: a longer name stands on its own line, its help below;
* help text is shown as written (no markup) and wrapped at spaces only, so ``--no-resume`` is never split.

:class:`Group` (the ``cerbero-hf`` app's command group) gives every registered command this help.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Sequence

from typer.core import TyperArgument, TyperCommand, TyperGroup

WIDTH = 80  # click's limit: wider terminals get 80-column help, narrower ones their width
NAME_COLUMN = 22  # the widest name column; a longer name (``--max-conversations INT``) puts its help below
STATED_DEFAULT = re.compile(r"(\(|;\s*|\.\s*)defaults?\b", re.IGNORECASE)  # "(default 8000)", "; default: x"
NBSP = "\xa0"  # joins the words of "[default: 64]" while wrapping
TYPE_NAMES = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}


class PositionalArgument(TyperArgument):
    """A typer argument with click's usage style and no type column (see module docstring)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def get_usage_pieces(self, ctx) -> list[str]:
        name = self.display_name_raw
        if " " in name:  # a metavar that spells the argument's forms out ("INPUT OUTPUT | FOLDER...")
            return [name]
        if not self.required:
            name = f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]

    def display_type_rich(self, ctx) -> str | None:
        return None


def invocation(param) -> str:
    """The name column: ``--flag TYPE``, ``--on / --off`` (a switch: no metavar) or an argument's metavar."""
    if param.param_type_name == "argument":
        return param.display_name_raw
    names = ", ".join(param.opts)
    if not param.is_flag and not param.count:
        metavar = param.metavar or TYPE_NAMES.get(param.type_descriptor.annotation, "TEXT")
        names += f" {metavar}"
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    return names


def default_text(param) -> str:
    """``[default: 64]``; a pair of switches names the one that is on by default; nothing for an unset value."""
    if param.param_type_name != "option" or not param.show_default or STATED_DEFAULT.search(param.help or ""):
        return ""  # the help states its default already: one, not "(default 8000) [default: 8000]"
    value = param.default
    if param.is_flag:
        if not param.secondary_opts or value is None:
            return ""
        value = (param.opts if value else param.secondary_opts)[0].lstrip("-")
    elif isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"[default: {value}]" if value not in (None, "") else ""


def definitions(rows: Sequence[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    """Two columns: names at ``indent``, help from the name column on; help wraps at spaces, never inside a word
    that fits (``--no-resume``, ``cerbero-hf[ray]``)."""
    column = min(max((len(name) for name, _ in rows), default=0), NAME_COLUMN)
    start = indent + column + 2
    wrap = textwrap.TextWrapper(width=max(width - start, 20), break_on_hyphens=False)  # splits at ASCII spaces
    lines = []
    for name, text in rows:
        body = [line.replace(NBSP, " ") for line in wrap.wrap(text)] or [""]
        if len(name) > column:
            lines.append(" " * indent + name)
        else:
            lines.append((" " * indent + name.ljust(column) + "  " + body.pop(0)).rstrip())
        lines.extend(" " * start + line for line in body)
    return lines


def write_help(command, ctx, formatter, commands: Sequence[tuple[str, str]] = ()) -> None:
    """The whole help of ``command``: usage, description, ``Arguments:``, ``Options:`` (and a group's
    ``Commands:``), at the terminal's width but at most :data:`WIDTH` columns."""
    formatter.width = min(shutil.get_terminal_size().columns, WIDTH)
    command.format_usage(ctx, formatter)
    for paragraph in filter(None, (command.help or "").split("\n\n")):
        formatter.write_paragraph()
        formatter.write("".join(f"  {line}\n" for line in textwrap.wrap(
            " ".join(paragraph.split()), formatter.width - 2, break_on_hyphens=False)))
    sections: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or param.param_type_name not in sections:
            continue
        text = " ".join(filter(None, [param.help or "", default_text(param).replace(" ", NBSP)]))  # one piece
        sections[param.param_type_name].append((invocation(param), text))
    for title, rows in (("Arguments", sections["argument"]), ("Options", sections["option"]), ("Commands", commands)):
        if rows:
            formatter.write_paragraph()
            formatter.write(f"{title}:\n" + "".join(line + "\n" for line in definitions(rows, formatter.width)))


class Command(TyperCommand):
    """A registered command with the plain help of the module docstring."""

    def format_help(self, ctx, formatter) -> None:
        write_help(self, ctx, formatter)


class Group(TyperGroup):
    """The app's group: plain help for itself and every command; positional arguments as
    :class:`PositionalArgument`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = Command
            for param in command.params:
                if type(param) is TyperArgument:
                    param.__class__ = PositionalArgument

    def format_help(self, ctx, formatter) -> None:
        write_help(self, ctx, formatter, [(name, command.get_short_help_str(limit=1000))
                                          for name, command in self.commands.items() if not command.hidden])
