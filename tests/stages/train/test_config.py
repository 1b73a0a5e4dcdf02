"""The train stage's one config: TRL's SFTConfig plus our fields, as recipe keys, CLI flags and Python API."""

import dataclasses
import json
import subprocess
import sys

import pytest

from cerbero_hf.errors import InputError
from cerbero_hf.stages.base import Context
from cerbero_hf.stages.train.config import TrainConfig, parser
from cerbero_hf.stages.train.stage import STAGE, TrainConfigRef, TrainResult, filter_corpora


def _plain(cfg) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def test_unknown_train_key_is_one_line_naming_it():
    with pytest.raises(InputError) as err:
        TrainConfigRef.from_recipe({"learning_rate": 1e-5, "lerning_rate": 1e-5}, file="r.yaml",
                                   defaults={"language": "it", "seed": 1}, enabled=True)
    assert str(err.value) == "file r.yaml, column 'train.lerning_rate': unknown setting train.lerning_rate"


@pytest.mark.parametrize("section, message", [
    ({"learning_rate": "fast"}, "train.learning_rate must be a number, got 'fast'"),
    ({"max_steps": 1.5}, "train.max_steps must be an integer"),
    ({"packing": "maybe"}, "train.packing must be true or false"),
    ({"condition": "both"}, "train.condition must be fauno, generated or full, got 'both'"),
    ({"lr_scheduler_type": "cosin"}, "train.lr_scheduler_type must be one of linear, cosine"),
    ({"optim": "adam"}, "train.optim must be one of adamw_torch"),
    ({"per_device_train_batch_size": 0}, "train.per_device_train_batch_size must be >= 1, got 0"),
    ({"eval_fraction": 2}, "train.eval_fraction must be <= 1, got 2"),
    ({"corpora": ["fauno=x@lots"]}, "bad corpus weight 'lots'"),
    ({"corpora": [{"name": "x"}]}, "needs 'path'"),
])
def test_bad_train_values_fail_at_parse_time(section, message):
    with pytest.raises(InputError, match="train") as err:
        TrainConfig.from_recipe(section, file="r.yaml", defaults={})
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.file == "r.yaml"


def test_recipe_section_defaults_and_corpora_mappings():
    cfg = STAGE.config.from_recipe({"max_steps": "6", "corpora": [{"path": "user/ds", "name": "fauno", "weight": 2}]},
                                   file=None, defaults={"language": "en", "seed": 3}, enabled=True)
    assert isinstance(cfg, TrainConfig) and (cfg.max_steps, cfg.language, cfg.seed, cfg.data_seed) == (6, "en", 3, 3)
    assert cfg.corpora == [{"path": "user/ds", "name": "fauno", "weight": 2}]
    assert STAGE.config.from_recipe({"seed": 5}, file=None, defaults={"seed": 3}, enabled=True).seed == 5
    off = STAGE.config.from_recipe({"max_steps": 2}, file=None, defaults={}, enabled=False)  # kept as written
    assert isinstance(off, TrainConfigRef) and off.to_dict() == {"max_steps": 2}
    with pytest.raises(InputError, match=r"column 'train.anything'"):  # a disabled section is checked too
        STAGE.config.from_recipe({"anything": 1}, file=None, defaults={}, enabled=False)


def test_cli_flags_are_the_config_fields_and_the_recipe_keys():
    p = parser()
    dests = {}
    for action in p._actions:  # the first action of a dest sets its default (--no-packing comes second)
        if action.dest != "help":
            dests.setdefault(action.dest, action.default)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(dests) == set(fields)
    assert {"model", "corpora", "condition", "lora_r", "learning_rate", "max_length", "packing", "push_to_hub",
            "hub_model_id", "hub_strategy", "optim", "bf16"} <= set(dests)
    for name in fields:  # every flag is a recipe key: from_recipe accepts it (with the config's default value)
        default = fields[name].default
        if default is dataclasses.MISSING:
            default = fields[name].default_factory()
        assert TrainConfig.from_recipe({name: default} if name not in ("corpora",) else {}, defaults={})
        if "cli" in fields[name].metadata:  # ours and the paper's: the flag's default is the field's
            assert dests[name] == default, name
    # and all together: no flags == an empty recipe section == the constructor
    parsed = vars(p.parse_args([]))
    assert _plain(TrainConfig(**parsed)) == _plain(TrainConfig.from_recipe({}, defaults={})) == _plain(TrainConfig())
    assert {"--learning-rate", "--learning_rate", "--no-packing", "--lora-r"} <= set(p._option_string_actions)


def test_cli_bad_flag_value_exits_2_with_one_line(capsys):
    from cerbero_hf.cli import main

    for argv, message in ((["--learning-rate", "abc"], "invalid float value: 'abc'"),
                          (["--lora-r", "0"], "--lora-r must be >= 1, got 0"),
                          (["--bogus", "1"], "unknown option --bogus")):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "fauno=x", "out", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_help_lists_the_flags(capsys):
    from cerbero_hf.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in ("--learning-rate", "--max-length", "--lora-r", "--condition", "--hub-model-id", "--config"):
        assert flag in out


def test_stage_runs_on_the_filter_outputs():
    from cerbero_hf.stages.quality.stage import FilterResult

    ctx = Context(output="x", inputs={"filter": FilterResult(generated="f/generated", refined="f/refined")})
    assert filter_corpora(ctx) == ["generated=f/generated", "fauno=f/refined"]
    with pytest.raises(InputError, match="found no filtered corpus"):
        filter_corpora(Context(output="x", inputs={"filter": FilterResult()}))
    with pytest.raises(InputError, match="needs the output of 'filter'"):
        filter_corpora(Context(output="x"))
    assert (STAGE.name, STAGE.inputs, STAGE.folder, STAGE.result) == ("train", ("filter",), "model", TrainResult)
    res = TrainResult(rows=3, steps=2, tokens=9, train_loss=1.5, model="m", merged="m-merged")
    assert res.outputs() == {"model": "m", "merged": "m-merged"} and res.counts()["rows"] == 3


def test_stage_and_cli_import_without_trl():
    code = ("import sys, cerbero_hf.stages.train.stage, cerbero_hf.stages, cerbero_hf.cli\n"
            "cerbero_hf.stages.get_stage('train')\n"
            "assert not any(m == 'trl' or m.startswith('trl.') for m in sys.modules), 'trl imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
