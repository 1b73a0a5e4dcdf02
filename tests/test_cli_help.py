"""``--help`` is readable at 80 columns, for every command the app registers (a new command is covered as is).

Each command's help is rendered by the real CLI in a fresh process, in a pipe (not a terminal), once with
``COLUMNS=80`` and once without ``COLUMNS``; both must be the same text and: name every option whole (no
``--ray-cpus-per-work…``), show no metavar on a switch and an upper-case one (``TEXT``, ``KEY=VALUE``) on an
option that takes a value, keep bracketed text such as ``cerbero-hf[ray]`` as written, have no line over 80
characters and fewer than 80 lines (``train`` lists TRL's flags too: its help is grouped, ours first, and gives
each flag one default). Positional arguments read ``INPUT OUTPUT`` as click and argparse write them, and every
option with a fixed set of values lists them ("One of: ...").
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest
from typer.main import get_command

from cerbero_hf.cli import app
from cerbero_hf.cli.publish import REPO_TYPES
from cerbero_hf.config import field_specs

GROUP = get_command(app)
COMMANDS = sorted(GROUP.commands)
ALL = ["", *COMMANDS]  # "": the bare ``cerbero-hf --help``
# command -> its positional arguments as the usage line shows them (the CLI's documented surface)
POSITIONALS = {"seeds": "INPUT OUTPUT", "generate": "SEEDS OUTPUT", "refine": "INPUT OUTPUT",
               "score": "INPUT OUTPUT | FOLDER...", "evaluate": "MODEL", "publish": "REPO_ID PATH", "run": "RECIPE",
               "demo": "", "report": "RUN_DIR"}
# the flags the issue names, each of which must list its values and refuse others
CHOICE_FLAGS = {"generate": ["--mode", "--index"], "score": ["--policy"], "refine": ["--lang-action"],
                "publish": ["--repo-type"]}
METAVAR = re.compile(r"[A-Z][A-Z0-9_.]*(=[A-Z]+)?( ?(,\.\.\.|\.\.\.))?")  # TEXT, INT, KEY=VALUE, INT,..., TEXT ...


@functools.cache
def cli(args: tuple, columns: str | None = "80") -> tuple[int, str, str]:
    """``cerbero-hf ARGS`` in a fresh process, its output a pipe: (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = columns
    done = subprocess.run([sys.executable, "-m", "cerbero_hf", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    return done.returncode, done.stdout, done.stderr


def help_text(command: str) -> str:
    code, out, err = cli((command, "--help") if command else ("--help",))
    assert code == 0, err[-2000:]
    return out


def flat(text: str) -> str:
    return " ".join(text.split())


def rows(text: str, title: str | None = None) -> dict[str, str]:
    """The definition rows of one section ("Options:"; ``None``: every section): name column -> its help.

    A row starts two spaces in; its help follows after two spaces or on the lines below, indented further."""
    out, current, inside = {}, None, title is None
    for line in text.splitlines():
        if not line.startswith(" ") and line.strip():  # a heading ("Options:") or the usage / description
            heading = line.strip()
            inside = heading.endswith(":") and (title is None or heading[:-1].lower() == title.lower())
            current = None
        elif inside and re.match(r"  \S", line):
            current = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            out[current] = line.strip()[len(current):].strip()
        elif inside and current and line.strip():
            out[current] += " " + line.strip()
    return out


def params(command: str) -> list:
    target = GROUP.commands[command] if command else GROUP
    ctx = target.make_context(command or "cerbero-hf", ["--help"], resilient_parsing=True)
    return [p for p in target.get_params(ctx) if not getattr(p, "hidden", False)]


def row_of(table: dict[str, str], opt: str) -> tuple[str, str]:
    """The row whose name column lists ``opt``."""
    for name, text in table.items():
        if re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", name):
            return name, text
    raise AssertionError(f"no row for {opt}: {list(table)}")


@pytest.mark.parametrize("command", ALL)
def test_help_fits_80_columns_and_is_the_same_in_a_pipe(command):
    text = help_text(command)
    assert cli((command, "--help") if command else ("--help",), None)[1] == text  # no COLUMNS: a pipe's 80
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, long
    assert "…" not in text and "\xa0" not in text  # nothing cut; no wrapping aid left in
    if command != "train":
        assert len(text.splitlines()) < 80, (command, len(text.splitlines()))


@pytest.mark.parametrize("command", [c for c in ALL if c != "train"])
def test_help_names_every_option_whole_and_shows_metavars_only_on_values(command):
    text = help_text(command)
    table = rows(text)
    for p in params(command):
        if p.param_type_name != "option":
            continue
        for opt in p.opts + p.secondary_opts:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (command, opt)
        name, _ = row_of(table, p.opts[0])
        rest = name
        for opt in p.opts + p.secondary_opts:
            rest = re.sub(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", "", rest)
        rest = rest.replace(",", " ").replace("/", " ").strip()
        if p.is_flag:
            assert rest == "", (command, name)  # a switch takes no value: no metavar
        else:
            assert METAVAR.fullmatch(rest), (command, name)  # TEXT, INT, KEY=VALUE: no <str>, <list[str]>
    if command == "run":
        assert row_of(table, "--set")[0] == "--set KEY=VALUE"
    if command == "":
        for name in COMMANDS:
            assert name in rows(text, "Commands"), name


@pytest.mark.parametrize("command", [c for c in ALL if c != "train"])
def test_bracketed_text_in_help_is_shown_as_written(command):
    text = flat(help_text(command))
    for p in params(command):
        for token in re.findall(r"\w\[[\w.,-]+\]", p.help or ""):
            assert token in text, (command, token)
    if command in ("generate", "score"):
        assert "pip install 'cerbero-hf[ray]'" in text


def declared_choices(command: str) -> dict[str, list[str]]:
    """Flag -> allowed values, from the stage configs the command's flags are generated from."""
    from cerbero_hf.cli._config import flag_name

    callback = GROUP.commands[command].callback
    return {flag_name(spec): list(map(str, spec["choices"])) for cls in getattr(callback, "configs", ())
            for spec in field_specs(cls) if spec["cli"] and spec.get("choices")}


@pytest.mark.parametrize("command", sorted(POSITIONALS))
def test_help_shows_positionals_as_click_does_and_lists_choices(command):
    assert set(POSITIONALS) == set(COMMANDS) - {"train"}
    text = help_text(command)
    usage = next(line.strip() for line in text.splitlines() if line.strip().startswith("Usage:"))
    assert usage.endswith(f" {command} [OPTIONS] {POSITIONALS[command]}".rstrip()), usage
    assert not set("{}<>") & set(usage), usage
    arguments = rows(text, "Arguments")
    assert " ".join(arguments) == POSITIONALS[command]  # name column: the metavar, no type such as <str>
    assert all(help_ and "<" not in help_ for help_ in arguments.values()), arguments

    options = rows(text, "Options")
    expected = declared_choices(command)
    if command == "publish":
        expected["--repo-type"] = list(REPO_TYPES)
    assert set(CHOICE_FLAGS.get(command, [])) <= set(expected)
    for flag, values in expected.items():
        assert f"One of: {', '.join(values)}." in row_of(options, flag)[1], (flag, row_of(options, flag))


def test_train_help_lists_ours_first_then_trl_with_one_default_each():
    import argparse
    import dataclasses

    from cerbero_hf.cli.train import USAGE
    from cerbero_hf.stages.train.config import TrainConfig, is_ours, parser

    text = help_text("train")
    assert flat(text).startswith(f"usage: cerbero-hf train {USAGE}")
    headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
    ours = next(i for i, h in enumerate(headings) if h.startswith("cerbero-hf settings"))
    trl = next(i for i, h in enumerate(headings) if h.startswith("TRL "))
    assert ours < trl
    ours_at, trl_at = text.index(headings[ours]), text.index(headings[trl])
    fields = {f.name: is_ours(f) for f in dataclasses.fields(TrainConfig) if f.init}
    table = rows(text)
    for action in parser()._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings or action.dest not in fields:
            continue
        flag = next(s for s in action.option_strings if "_" not in s)  # --max-steps, not --max_steps
        name, help_ = row_of(table, flag)
        at = text.index("\n  " + name)
        assert (ours_at < at < trl_at) if fields[action.dest] else at > trl_at, flag
        assert flat(help_).count("(default") <= 1, (flag, help_)  # not "(default: …) (default: None)"
        switch = action.nargs == 0 or (action.nargs == "?" and action.const is True)
        rest = re.sub(r"--[\w-]+", "", name).replace("/", "").strip()
        assert (rest == "") if switch else bool(METAVAR.fullmatch(rest)), name
    assert re.search(r"--packing / --no-packing(?![\w-])", text)
    assert "One of: fauno, generated, full." in row_of(table, "--condition")[1]
    assert "(default: None)" not in text


@pytest.mark.parametrize("command,flag", [(c, f) for c, flags in sorted(CHOICE_FLAGS.items()) for f in flags])
def test_a_value_outside_the_choices_is_one_line_exit_2(command, flag, tmp_path):
    args = ["user/x", str(tmp_path)] if command == "publish" else [str(tmp_path / "in"), str(tmp_path / "out")]
    code, out, err = cli((command, *args, flag, "bogus"))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    line = err.strip()
    assert line.startswith(f"Error: {flag} must be ") and line.endswith("got 'bogus'"), line
    values = list(REPO_TYPES) if flag == "--repo-type" else declared_choices(command)[flag]
    assert all(v in line for v in values), line
