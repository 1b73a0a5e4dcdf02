"""One declaration per setting: for every stage, the CLI flags, the recipe keys and the config fields are
the same set with the same defaults (train's flags come from TRL's parser: tests/stages/train)."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main
from typer.core import TyperOption

from cerbero_hf.cli import app
from cerbero_hf.cli._config import _default_text, flag_name
from cerbero_hf.config import field_specs
from cerbero_hf.engine import EngineConfig
from cerbero_hf.recipe import parse_recipe
from cerbero_hf.stages import NAMES, get_stage

# the CLI command that runs each stage (score's command scores and filters)
COMMAND = {"seeds": "seeds", "generate": "generate", "refine": "refine", "score": "score", "filter": "score",
           "evaluate": "evaluate", "publish": "publish"}
# switches of a command that choose what it does rather than configure a stage
# (evaluate's CLI takes any model folder: writing its card is opt-in there, where the recipe's own model's card
# is updated by default; publish's CLI uploads one folder of a given repo type, public unless it is a model, with
# the extra files --include names; --kind is its deprecated spelling of --repo-type)
# --overwrite (cerbero_hf.outputs: write into a folder holding files cerbero-hf did not write) is declared once, in
# config_command(writes_folder=True), for every command that writes an output folder, not as a config setting.
MODE_SWITCHES = {"score": {"compare", "plot", "include_rejected", "overwrite"},
                 "evaluate": {"output", "card", "update_card"}, "publish": {"repo_type", "kind", "private", "include"},
                 "seeds": {"overwrite"}, "generate": {"overwrite"}, "refine": {"overwrite"}}


def _options(command: str) -> dict[str, TyperOption]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params if isinstance(p, TyperOption)}


# commands whose heavy work can run on Ray: they also take the engine's flags (--engine, --ray-address, ...),
# which are the recipe's top-level `engine:` section
ENGINE_COMMANDS = {"score", "generate"}


def _configs_of(command: str) -> list[type]:
    configs = [get_stage(s).config for s, c in COMMAND.items() if c == command]
    return configs + ([EngineConfig] if command in ENGINE_COMMANDS else [])


@pytest.mark.parametrize("command", sorted(set(COMMAND.values())))
def test_cli_flags_are_the_config_fields(command):
    options = _options(command)
    fields = {s["name"]: s for cls in _configs_of(command) for s in field_specs(cls) if s["cli"]}
    assert set(options) - MODE_SWITCHES.get(command, set()) == set(fields)
    for name, spec in fields.items():
        assert flag_name(spec) in options[name].opts + options[name].secondary_opts
        assert spec["help"] and spec["help"] in options[name].help
        # the flag's default is the config's default (lists as comma-separated text), shown in --help
        assert options[name].default == _default_text(spec["default"]), name
        assert options[name].show_default == (options[name].default not in (None, "")), name


@pytest.mark.parametrize("stage", [n for n in NAMES if n != "train"])
def test_recipe_keys_are_the_config_fields_with_the_same_defaults(stage):
    recipe = parse_recipe({name: {"enabled": False} for name in NAMES})  # disabled: no generator needed
    config = recipe.section(stage)
    cls = get_stage(stage).config
    assert type(config) is cls
    assert set(recipe.to_dict()[stage]) - {"enabled"} == {f.name for f in dataclasses.fields(cls)}
    assert config == cls()  # the recipe's defaults are the config's (top-level language/seed are the same)


def test_every_stage_is_registered_with_a_config_a_result_and_declared_inputs():
    for name in NAMES:
        stage = get_stage(name)
        assert stage.name == name and dataclasses.is_dataclass(stage.result)
        assert all(NAMES.index(i) < NAMES.index(name) for i in stage.inputs), name


def test_the_engine_section_keys_are_the_engine_flags():
    recipe = parse_recipe({"engine": {"kind": "ray", "address": "", "workers": 2},
                           **{name: {"enabled": False} for name in NAMES}})
    assert set(recipe.to_dict()["engine"]) == {f.name for f in dataclasses.fields(EngineConfig)}
    assert recipe.engine == EngineConfig(kind="ray", workers=2)  # an empty address is "not set"
    for command in ENGINE_COMMANDS:
        options = _options(command)
        assert {flag_name(s) for s in field_specs(EngineConfig)} <= {o for p in options.values() for o in p.opts}
