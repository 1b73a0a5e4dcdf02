"""``--help`` follows the conventions of the ecosystem's command lines (click, argparse, ``hf``, TRL).

Positional arguments read ``INPUT OUTPUT`` (not typer's ``{INPUT}`` and ``<str>``); every option with a fixed
set of values lists them ("One of: ...") and the parser refuses anything else with one line and exit code 2.
Each command runs through the console-script entry point (``cerbero_hf.cli.main``), as ``cerbero-hf CMD --help``.
"""

from __future__ import annotations

import re

import pytest

from cerbero_hf.cli.publish import REPO_TYPES
from cerbero_hf.cli.train import USAGE as TRAIN_USAGE
from cerbero_hf.config import field_specs

# command -> its positional arguments as the usage line shows them (the CLI's documented surface)
POSITIONALS = {"seeds": "INPUT OUTPUT", "generate": "SEEDS OUTPUT", "refine": "INPUT OUTPUT",
               "score": "INPUT OUTPUT | FOLDER...", "evaluate": "MODEL", "publish": "REPO_ID PATH", "run": "RECIPE",
               "demo": ""}
# the flags the issue names, each of which must list its values and refuse others
CHOICE_FLAGS = {"generate": ["--mode", "--index"], "score": ["--policy"], "refine": ["--lang-action"],
                "publish": ["--repo-type"]}


def cli(args: list, capsys=None, columns: str = "1000") -> tuple[int, str, str]:
    """``cerbero-hf ARGS`` in a fresh process, as a user runs it: (exit code, stdout, stderr).

    ``COLUMNS`` sets rich's width (1000: one line per option, no wrapped help); a fresh process keeps the help
    independent of what earlier tests did to this one (rich consoles, environment)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, COLUMNS=columns)
    done = subprocess.run([sys.executable, "-m", "cerbero_hf", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)
    return done.returncode, done.stdout, done.stderr


def help_text(command: str, capsys, monkeypatch) -> str:
    code, out, err = cli([command, "--help"], capsys)
    assert code == 0, err[-2000:]
    return out


def panel(text: str, title: str) -> list[str]:
    """The rows of one rich help panel ("Arguments", "Options"), box characters stripped."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(f"╭─ {title} "):
            inside = True
        elif inside and line.startswith("╰"):
            break
        elif inside:
            rows.append(line.strip("│ ").rstrip())
    return rows


def option_help(text: str) -> dict[str, str]:
    """``--flag`` -> its help text (with the default), from the Options panel."""
    out, current = {}, None
    for row in panel(text, "Options"):
        match = re.match(r"(--[\w-]+)", row)
        if match:
            current = match.group(1)
            out[current] = row
        elif current:
            out[current] += " " + row.strip()
    return out


def declared_choices(command: str) -> dict[str, list[str]]:
    """Flag -> allowed values, from the stage configs the command's flags are generated from."""
    import typer.main

    from cerbero_hf.cli import app
    from cerbero_hf.cli._config import flag_name

    callback = typer.main.get_command(app).commands[command].callback
    return {flag_name(spec): list(map(str, spec["choices"])) for cls in getattr(callback, "configs", ())
            for spec in field_specs(cls) if spec["cli"] and spec.get("choices")}


@pytest.mark.parametrize("command", sorted(POSITIONALS))
def test_help_shows_positionals_as_click_does_and_lists_choices(command, capsys, monkeypatch):
    text = help_text(command, capsys, monkeypatch)
    usage = next(line.strip() for line in text.splitlines() if line.strip().startswith("Usage:"))
    assert usage.endswith(f" {command} [OPTIONS] {POSITIONALS[command]}".rstrip()), usage
    assert not set("{}<>") & set(usage), usage
    arguments = panel(text, "Arguments")
    assert bool(arguments) == bool(POSITIONALS[command])
    for row in arguments:  # name and help, no typer type column such as <str> or <list[str]>
        assert "<" not in row.split("  ")[0] and not re.search(r"<(str|int|float|path|list\[\w+\])>", row), row
        assert row.lstrip("* ").split("  ")[0].strip() in POSITIONALS[command], row

    options = option_help(text)
    expected = declared_choices(command)
    if command == "publish":
        expected["--repo-type"] = list(REPO_TYPES)
    assert set(CHOICE_FLAGS.get(command, [])) <= set(expected)
    for flag, values in expected.items():
        assert f"One of: {', '.join(values)}." in options[flag], (flag, options[flag])


def test_train_help_is_trl_style_with_upper_case_positionals(capsys):
    code, out, err = cli(["train", "--help"], capsys)
    assert code == 0, err[-2000:]
    assert out.startswith(f"usage: cerbero-hf train {TRAIN_USAGE}\n")
    assert re.search(r"--condition \{fauno,generated,full\}", out)  # argparse lists an option's choices


@pytest.mark.parametrize("command,flag", [(c, f) for c, flags in sorted(CHOICE_FLAGS.items()) for f in flags])
def test_a_value_outside_the_choices_is_one_line_exit_2(command, flag, tmp_path, capsys):
    args = ["user/x", tmp_path] if command == "publish" else [tmp_path / "in", tmp_path / "out"]
    code, out, err = cli([command, *args, flag, "bogus"], capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    line = err.strip()
    assert line.startswith(f"Error: {flag} must be ") and line.endswith("got 'bogus'"), line
    values = list(REPO_TYPES) if flag == "--repo-type" else declared_choices(command)[flag]
    assert all(v in line for v in values), line
