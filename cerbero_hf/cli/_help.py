"""How ``--help`` shows positional arguments: ``INPUT OUTPUT``, as click, argparse and ``hf`` do.

typer's own style writes a required argument as ``{INPUT}`` in the usage line and gives every argument a
``<str>`` type column; the ecosystem's commands (``hf upload REPO_ID [LOCAL_PATH]``, TRL's scripts, click's
plain help) write ``INPUT``, ``[INPUT]`` and ``INPUT...`` and no type. :class:`Group` (the ``cerbero-hf``
app's command group) gives every command's positional arguments that style: the upper-case name or the
declared ``metavar``, brackets only for optional ones, ``...`` for ones that take several values, no type.
Options keep typer's rendering; their allowed values are listed in their help ("One of: ...").
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperGroup


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


class Group(TyperGroup):
    """The app's group: every command's positional arguments become :class:`PositionalArgument`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            for param in command.params:
                if type(param) is TyperArgument:
                    param.__class__ = PositionalArgument
