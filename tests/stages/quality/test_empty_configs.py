"""Empty results: every config a stage's README announces loads with ``load_dataset``, the CLI prints only calls
that work, an empty config is still written with its schema (``io.load_config`` reads it), the card claims no
bytes for rows it does not have, and ``score --compare`` / ``--include-rejected`` read folders with an empty
config. (``datasets`` cannot load a zero-row split at all: an empty config other than ``default`` is written
but not announced; see cerbero_hf/io.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import run_cli

from cerbero_hf.cli.score import _compare
from cerbero_hf.io import load_config
from cerbero_hf.schema import features, make_row, rejected_features
from cerbero_hf.stages.base import Context, Result, output
from cerbero_hf.stages.quality.stage import FilterConfig, ScoreConfig, run_filter, run_score
from cerbero_hf.tiny_models import italian_sentences


def _refined_result(path):
    from dataclasses import make_dataclass

    cls = make_dataclass("RefinedCorpus", [("refined", str, output())], bases=(Result,))
    return cls(refined=str(path))


def _card(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    return yaml.safe_load(text.split("---")[1])


def _announced(folder: Path) -> list[str]:
    return [c["config_name"] for c in _card(folder)["configs"]]


def _clean_corpus(path: Path, n: int = 6) -> Path:
    s = italian_sentences(40)
    rows = [make_row(f"c{i}", [{"role": "user", "content": s[i]}, {"role": "assistant", "content": s[i + 20]}],
                     source="test") for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _assert_every_announced_config_loads(folder: Path) -> None:
    info = {i["config_name"]: i for i in _card(folder).get("dataset_info") or []}
    for name in _announced(folder):
        if name == "default" and info[name]["splits"][0]["num_examples"] == 0:
            continue  # nothing kept: announced so that load_dataset(out) never falls back to 'rejected'
        ds = datasets.load_dataset(str(folder), name, split="train")
        assert len(ds) == info[name]["splits"][0]["num_examples"] > 0
    for name in ("default", "rejected"):  # written with the corpus schema, empty or not
        assert load_config(folder, name).features == (features() if name == "default" else rejected_features())


def _written_rows(folder: Path, config: str) -> int:
    files = sorted((folder / ("data" if config == "default" else config)).glob("train-*.parquet"))
    assert files, f"{config} not written"
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def test_refine_with_nothing_rejected_prints_only_calls_that_load(tmp_path, cli_env):
    out = tmp_path / "refined"
    res = run_cli(["refine", _clean_corpus(tmp_path / "clean.jsonl"), out], env={**cli_env, "COLUMNS": "1000"})
    assert res.returncode == 0, res.stderr[-2000:]
    calls = re.findall(r"load_dataset\([^)]*\)", res.stdout)
    assert calls, res.stdout
    for call in calls:  # every call the CLI tells the user to run works
        assert len(eval(call, {"load_dataset": datasets.load_dataset})["train"]) > 0, call
    assert _written_rows(out, "rejected") == 0  # written all the same, with the rejected schema
    assert load_config(out, "rejected").features == rejected_features()
    _assert_every_announced_config_loads(out)


def test_score_and_filter_write_every_config_and_each_announced_one_loads(tmp_path, tiny_mlm):
    corpus = _clean_corpus(tmp_path / "clean.jsonl")
    scored = run_score(ScoreConfig(model=str(tiny_mlm), device="cpu"),
                       Context(output=tmp_path / "scored", inputs={"refine": _refined_result(corpus)}))
    folder = Path(scored.refined)
    assert _written_rows(folder, "rejected") == 0  # the score stage writes its rejected config too
    assert load_config(folder, "rejected").features == rejected_features()
    _assert_every_announced_config_loads(folder)

    keep_all = run_filter(FilterConfig(max_nll=1e6), Context(output=tmp_path / "all", inputs={"score": scored}))
    assert keep_all.refined_rejected == 0
    _assert_every_announced_config_loads(Path(keep_all.refined))

    keep_none = run_filter(FilterConfig(max_nll=1e-6), Context(output=tmp_path / "none", inputs={"score": scored}))
    folder = Path(keep_none.refined)
    assert keep_none.refined_kept == 0 and keep_none.refined_rejected > 0
    _assert_every_announced_config_loads(folder)
    kept = load_config(folder)
    assert len(kept) == 0 and kept.features == features()
    default = next(i for i in _card(folder)["dataset_info"] if i["config_name"] == "default")
    assert default["dataset_size"] == default["splits"][0]["num_bytes"] == 0  # no bytes claimed for zero rows


def test_num_bytes_counts_the_written_rows_not_the_table_they_were_filtered_from(tmp_path):
    from cerbero_hf.io import save_hub_folder

    rows = [make_row(f"r{i}", [{"role": "user", "content": "x" * 200}], source="t") for i in range(100)]
    ds = datasets.Dataset.from_list(rows, features=features())
    some = ds.filter(lambda r: r["id"] in ("r1", "r2"))
    save_hub_folder(tmp_path / "out", {"default": some})
    info = _card(tmp_path / "out")["dataset_info"][0]
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert info["splits"][0]["num_examples"] == 2
    assert info["splits"][0]["num_bytes"] == pytest.approx(loaded.data.nbytes, rel=0.2)
    assert info["splits"][0]["num_bytes"] < ds.data.nbytes / 10


def test_compare_reads_folders_with_an_empty_config(tmp_path, tiny_mlm, capsys):
    corpus = _clean_corpus(tmp_path / "clean.jsonl")
    scored = run_score(ScoreConfig(model=str(tiny_mlm), device="cpu"),
                       Context(output=tmp_path / "scored", inputs={"refine": _refined_result(corpus)}))
    none = run_filter(FilterConfig(max_nll=1e-6), Context(output=tmp_path / "none", inputs={"score": scored}))
    for include in (False, True):
        _compare([scored.refined, none.refined], None, 2.0, include)
    out = capsys.readouterr().out
    assert out.count("refined") >= 2


def test_score_keeping_nothing_exits_2_naming_the_rejected_rows(tmp_path, tiny_mlm, cli_env):
    out = tmp_path / "none"
    res = run_cli(["score", _clean_corpus(tmp_path / "clean.jsonl"), out, "--model", tiny_mlm, "--max-nll", 1e-6],
                  env={**cli_env, "COLUMNS": "1000"})
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == (
        f"Error: file {out}: no row was kept, so the default config is empty and cannot be loaded; the 6 removed "
        f"rows load with load_dataset('{out}', 'rejected')")
    assert "Traceback" not in res.stderr
    assert len(datasets.load_dataset(str(out), "rejected", split="train")) == 6  # nothing lost
