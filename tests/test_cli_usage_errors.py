"""Every usage mistake is one line on stderr and exit code 2, for every command (built from the registry).

The cases come from the commands the app registers: an unknown option for each; a missing argument where the
command has a required one; a bad number where it has an option with a number default; a bad value where an
option lists its values ("One of: ..."). A new command is covered without editing this file. ``train`` parses its
own flags (TRL's ``HfArgumentParser``), so its cases come from that parser. Each runs through the console-script
entry point, in this process.
"""

from __future__ import annotations

import pytest
from typer.main import get_command

from cerbero_hf.cli import app, main

GROUP = get_command(app)


def _positionals(command) -> list[str]:
    return [f"x{i}" for i, p in enumerate(command.params) if p.param_type_name == "argument" and p.required]


def _cases():
    for name, command in sorted(GROUP.commands.items()):
        if name == "train":
            continue
        args = _positionals(command)
        yield pytest.param([name, *args, "--no-such-flag"], "No such option: --no-such-flag", id=f"{name}-unknown")
        if args:
            yield pytest.param([name], "Missing argument", id=f"{name}-missing")
        for p in command.params:
            if p.param_type_name != "option" or p.is_flag:
                continue
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
                yield pytest.param([name, *args, p.opts[0], "abc"], p.opts[0], id=f"{name}-type{p.opts[0]}")
                break
        for p in command.params:
            if p.param_type_name == "option" and "One of:" in (p.help or ""):
                yield pytest.param([name, *args, p.opts[0], "no-such-value"], "no-such-value",
                                   id=f"{name}-choice{p.opts[0]}")
                break
    yield pytest.param(["train", "x", "out", "--no-such-flag", "1"], "unknown option --no-such-flag", id="train-unknown")
    yield pytest.param(["train"], "no corpora", id="train-missing")
    yield pytest.param(["train", "x", "out", "--max-steps", "abc"], "--max_steps", id="train-type")
    yield pytest.param(["train", "x", "out", "--condition", "no-such-value"], "no-such-value", id="train-choice")
    yield pytest.param(["no-such-command"], "No such command 'no-such-command'", id="unknown-command")


@pytest.mark.parametrize("argv, says", list(_cases()))
def test_usage_mistake_is_one_line_and_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], (argv, err)
    assert "Traceback" not in out + err


def test_every_command_is_covered():
    ids = {case.id.split("-")[0] for case in _cases()}
    assert set(GROUP.commands) <= ids and len(GROUP.commands) >= 9


def _exit_code(argv) -> int:
    try:
        main(argv)
    except SystemExit as stop:
        return stop.code or 0
    return 0


def test_version_and_bare_command(capsys):
    from importlib.metadata import version

    import cerbero_hf

    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cerbero-hf {version('cerbero-hf')}" == f"cerbero-hf {cerbero_hf.__version__}"
    assert _exit_code([]) == 0
    out, err = capsys.readouterr()
    assert "Usage: " in out + err and "COMMAND" in out + err and "Error" not in out + err  # the help
