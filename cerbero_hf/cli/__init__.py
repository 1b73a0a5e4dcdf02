"""The ``cerbero-hf`` command line (typer). One module per stage under ``cerbero_hf/cli/``.

Each stage module defines ``register(app)`` and imports heavy libraries only inside its command
bodies, so ``cerbero-hf --help`` stays fast. Known errors (:class:`~cerbero_hf.errors.InputError`)
become one line on stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer


def _stage_modules() -> list[str]:
    """Every module in this package defines one stage; ``ORDER`` (default 100) sorts ``--help``."""
    import pkgutil

    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]

app = typer.Typer(
    name="cerbero-hf",
    help="Build a chat corpus and a chat model for your language, the Cerbero-7B way (arXiv 2311.15698).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_DEBUG = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _DEBUG["on"] = debug


_modules = [importlib.import_module(f"cerbero_hf.cli.{name}") for name in _stage_modules()]
for _module in sorted(_modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
    _module.register(app)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from cerbero_hf.errors import InputError

    try:
        app(args=argv, standalone_mode=False)
    except InputError as err:
        if _DEBUG["on"] or os.environ.get("CERBERO_HF_DEBUG"):
            raise
        typer.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as err:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(130)
        raise
