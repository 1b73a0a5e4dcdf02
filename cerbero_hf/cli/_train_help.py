"""``cerbero-hf train --help`` at 80 columns, in argparse's layout (TRL's parser prints it).

``HfArgumentParser``'s own help (``ArgumentDefaultsHelpFormatter``) lists every flag twice (``--max_steps
MAX_STEPS, --max-steps MAX_STEPS``, lines of 150 characters and more), a boolean field as two rows (``--packing
[PACKING]`` and ``--no_packing``) and appends ``(default: None)`` even to a help that states its default.
:class:`TrainHelpFormatter` keeps argparse's layout and the parser's groups (ours first, then TRL's) and shows:

* one spelling per flag, with dashes (``--max-steps``; the description says the underscore one works too);
* a switch without a metavar, with its negation on the same row (``--packing / --no-packing``); an option that
  takes a value with its type (``INT``, ``FLOAT``, ``TEXT``, ``BOOL``) or its declared metavar;
* the allowed values as "One of: ..." (a list of twelve schedulers does not fit a name column);
* one default: ``(default: X)`` only where the help does not state one and there is one to state;
* every line at most 80 columns (the terminal's width when narrower), wrapped at spaces only.
"""

from __future__ import annotations

import argparse
import enum
import re
import shutil
import textwrap

from cerbero_hf.cli._help import NBSP, STATED_DEFAULT, WIDTH

TYPE_NAMES: dict[object, str] = {int: "INT", float: "FLOAT", str: "TEXT"}  # an argparse type -> its metavar


def is_switch(action: argparse.Action) -> bool:
    """Takes no value (``store_true``/``store_false``, ``--help``) or an optional one (``--lora [true|false]``)."""
    return action.nargs == 0 or (action.nargs == "?" and action.const is True)


def _negation(action: argparse.Action) -> bool:
    """The ``--no_x`` / ``--no-x`` row ``HfArgumentParser`` adds after a boolean field that defaults to true."""
    return isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_")


def _plain(value) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _spaces(text: str) -> str:
    """Runs of ASCII whitespace as one space (``str.split`` would also split at the NBSP of a default)."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


class TrainHelpFormatter(argparse.HelpFormatter):
    """argparse's help with one row per flag, real metavars and one default (see module docstring)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=26, width=min(shutil.get_terminal_size().columns, WIDTH))
        self._negations: dict[str, str] = {}

    def add_arguments(self, actions) -> None:
        actions = list(actions)
        for action in actions:
            if _negation(action):
                self._negations[action.dest] = self._long(action)
        super().add_arguments([a for a in actions if not _negation(a)])

    @staticmethod
    def _long(action: argparse.Action) -> str:
        return next((s for s in action.option_strings if s.startswith("--") and "_" not in s), action.option_strings[0])

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = [s for s in action.option_strings if not s.startswith("--")] + [self._long(action)]
        text = ", ".join(names)
        if not is_switch(action):
            metavar = action.metavar or TYPE_NAMES.get(action.type) or (
                "BOOL" if getattr(action.type, "__name__", "") == "string_to_bool" else "TEXT")
            text += f" {metavar}" + (" ..." if action.nargs in ("+", "*") else "")
        if action.dest in self._negations:
            text += f" / {self._negations[action.dest]}"
        return text

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.choices and "One of" not in text:
            text += f" One of: {', '.join(map(_plain, action.choices))}."
        default = action.default
        if STATED_DEFAULT.search(text):  # "If True (default), ...": no second one
            shown = None
        elif is_switch(action):
            shown = "true" if default is True else None
        elif default in (None, argparse.SUPPRESS, "", [], ()):
            shown = None
        else:
            shown = _plain(default)
        if shown is not None:
            text += f" (default:{NBSP}{shown})".replace("%", "%%")
        return text.strip()

    def _split_lines(self, text: str, width: int) -> list[str]:
        lines = textwrap.wrap(_spaces(text), width, break_on_hyphens=False)
        return [line.replace(NBSP, " ") for line in lines]

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(_spaces(text), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        if usage is None:
            return super()._format_usage(usage, actions, groups, prefix)
        head, usage = prefix or "usage: ", usage % {"prog": self._prog}
        indent = len(head) + (len(self._prog) + 1 if usage.startswith(self._prog + " ") else 0)
        # a bracketed group ("[--config RECIPE.yaml]") is one piece when the line wraps
        pieces = [p.replace(" ", NBSP) for p in re.findall(r"\[[^\]]*\]|\S+", usage)]
        lines = textwrap.wrap(head + " ".join(pieces), self._width, subsequent_indent=" " * indent,
                              break_on_hyphens=False, break_long_words=False)
        return "\n".join(line.replace(NBSP, " ") for line in lines) + "\n\n"
