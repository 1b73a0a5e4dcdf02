"""The ``cerbero-hf`` command line (typer). One module per stage under ``cerbero_hf/cli/``.

Each stage module defines ``register(app)`` and imports heavy libraries only inside its command
bodies, so ``cerbero-hf --help`` stays fast. Known errors (:class:`~cerbero_hf.errors.InputError`)
become one line on stderr and exit code 2; ``--debug`` shows the traceback instead.

SIGINT (Ctrl-C) and SIGTERM stop a command the same way: the signal raises ``KeyboardInterrupt`` where the
command is, each stage keeps what it finished (the generate stage's replay cache, the recipe's manifest),
one line says how to resume, and the exit code is 128 + the signal number (130 / 143). A command may raise
:class:`Interrupted` with a more precise line (e.g. how many requests its cache holds). The stop is bounded:
a second signal, or :data:`STOP_GRACE_S` seconds without the process ending, exits at once with the same
code (what finished is already on disk: the caches commit each entry).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

import typer

from cerbero_hf.cli._help import Group  # positional arguments shown as INPUT OUTPUT, as click and argparse do


def _stage_modules() -> list[str]:
    """Every module in this package defines one stage; ``ORDER`` (default 100) sorts ``--help``."""
    import pkgutil

    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]

app = typer.Typer(
    name="cerbero-hf",
    cls=Group,
    rich_markup_mode=None,  # plain help (cerbero_hf.cli._help): no markup, so `[ray]` is shown as written
    help="Build a chat corpus and a chat model for your language, the Cerbero-7B way (arXiv 2311.15698).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_DEBUG = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=lambda value: _version(value), is_eager=True)) -> None:
    _DEBUG["on"] = debug


_modules = [importlib.import_module(f"cerbero_hf.cli.{name}") for name in _stage_modules()]
for _module in sorted(_modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
    _module.register(app)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


class Interrupted(Exception):
    """Raised by a command that caught ``KeyboardInterrupt`` and knows how its work resumes.

    ``hint`` completes the line ``Interrupted by SIGINT: <hint>``.
    """

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


REPLICA_WAIT_S = 10.0  # how long a rank other than the main one waits for the main to report a shared input error
STOP_GRACE_S = 30.0  # the most a stopping command may take after SIGINT/SIGTERM before it is ended at once
_SIGNAL = {"received": None, "reported": False}  # the first SIGINT/SIGTERM received during main()
_RESUME = "re-run the same command to resume"


def _line(hint: str | None = None) -> str:
    signum = _SIGNAL["received"] or signal.SIGINT
    return f"Interrupted by {signal.Signals(signum).name}: {hint or _RESUME + '.'}"


def _exit_now() -> None:
    """End the process at once (second signal, or a stop that outlived the grace period)."""
    if not _SIGNAL["reported"]:
        _SIGNAL["reported"] = True
        os.write(2, (_line() + "\n").encode())  # no Python-level lock: the main thread may hold stderr's
    os._exit(128 + int(_SIGNAL["received"] or signal.SIGINT))


def _on_signal(signum, _frame) -> None:
    if _SIGNAL["received"] is not None:  # asked twice: stop now
        _exit_now()
    _SIGNAL["received"] = signum
    watchdog = threading.Timer(STOP_GRACE_S, _exit_now)
    watchdog.daemon = True
    watchdog.start()
    raise KeyboardInterrupt


def _interrupted(hint: str | None = None) -> None:
    """Print the one line for an interrupted command and exit 128 + the signal number."""
    from cerbero_hf import distributed

    if not distributed.is_main():  # under a launcher: the launcher stopped this rank; the main process says why
        _SIGNAL["reported"] = True
    if not _SIGNAL["reported"]:
        _SIGNAL["reported"] = True
        typer.echo(_line(hint), err=True)
    sys.exit(128 + int(_SIGNAL["received"] or signal.SIGINT))


def _click_errors() -> tuple[type, ...]:
    """click's usage errors: typer 0.29 vendors its own click (``typer._click``), whose classes are not the
    ``click`` package's; both are caught."""
    import click

    classes: list[type] = [click.exceptions.ClickException]
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # a typer that uses the click package itself
        return tuple(classes)
    return (*classes, vendored.ClickException)


def _usage_error(err) -> None:
    """A usage mistake (unknown option or command, missing argument, bad value): one line, exit 2. A bare
    ``cerbero-hf`` shows the help instead (exit 0)."""
    if type(err).__name__ == "NoArgsIsHelpError":
        err.show()
        sys.exit(0)
    ctx = getattr(err, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(err.format_message().split())
    typer.echo(f"Error: {message}{where}", err=True)
    sys.exit(2)


def _version(value: bool) -> None:
    if value:
        from cerbero_hf import __version__

        typer.echo(f"cerbero-hf {__version__}")
        raise typer.Exit()


def _rank_failure(err: BaseException) -> None:
    """Under a launcher, an unexpected error is one line naming the rank (every rank prints its own), exit 1."""
    from cerbero_hf import distributed

    cause = str(err).strip().splitlines()[0] if str(err).strip() else ""
    typer.echo(f"Error: rank {distributed.rank()} of {distributed.world_size()}: {type(err).__name__}"
               + (f": {cause}" if cause else ""), err=True)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    Under a launcher (``torchrun``, ``accelerate launch``) every rank runs it: an input error is the same on every
    rank and only the main process prints it; any other error is one line naming the rank.
    """
    from cerbero_hf import distributed
    from cerbero_hf.errors import InputError

    distributed.die_with_launcher()
    distributed.quiet_replica()
    _SIGNAL.update(received=None, reported=False)
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread: leave the handlers alone
            break
    try:
        code = app(args=argv, standalone_mode=False)
    except Interrupted as err:
        _interrupted(err.hint)
    except InputError as err:
        if _SIGNAL["received"] is not None:  # a stage turned the interruption into an error message
            _interrupted()
        if _DEBUG["on"] or os.environ.get("CERBERO_HF_DEBUG"):
            raise
        if distributed.is_main():
            typer.echo(f"Error: {err}", err=True)
        else:  # every rank found it; the main process says it, and the launcher ends this rank when it exits
            import time

            try:
                time.sleep(REPLICA_WAIT_S)
            except KeyboardInterrupt:  # the launcher's SIGTERM once the main process exited
                pass
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as err:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(err, _click_errors()):
            _usage_error(err)
        if isinstance(err, click.exceptions.Abort):
            _interrupted()
        if _SIGNAL["received"] is not None:  # a library wrapped the KeyboardInterrupt in its own error
            _interrupted()
        if distributed.launched() and not (_DEBUG["on"] or os.environ.get("CERBERO_HF_DEBUG")):
            _rank_failure(err)
        raise
    finally:
        distributed.finish()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # In non-standalone mode typer returns the code of a ``typer.Exit`` (and 130 for a KeyboardInterrupt
    # it caught itself) instead of exiting: honour it.
    if _SIGNAL["received"] is not None or code == 130:
        _interrupted()
    if type(code) is int and code:
        sys.exit(code)
