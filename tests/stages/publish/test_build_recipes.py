"""The build recipes under dataset_scripts/ name real commands with real options (they are documentation users run)."""

import shlex

import pytest
import yaml
from conftest import ROOT

RECIPES = sorted((ROOT / "dataset_scripts").glob("*/build.yaml"))


def _commands(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str) and value.strip().startswith("cerbero-hf"):
                yield value
            else:
                yield from _commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from _commands(item)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_build_recipe_commands_parse(recipe):
    import typer.main

    from cerbero_hf.cli import app

    group = typer.main.get_command(app)
    commands = list(_commands(yaml.safe_load(recipe.read_text())))
    assert commands, f"{recipe} names no cerbero-hf command"
    for line in commands:
        args = shlex.split(line)[1:]
        cmd = group.get_command(None, args[0])
        assert cmd is not None, f"{recipe.parent.name}: unknown command {args[0]!r}"
        cmd.make_context(args[0], args[1:])  # raises on an unknown option or a missing argument
