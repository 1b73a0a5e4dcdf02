"""The lm-evaluation-harness task YAMLs in configs/lm_eval/ agree with ``cerbero-hf evaluate``.

lm-eval itself is not in our venv (installing it would downgrade python-dateutil 4.0.0 -> 2.9.0.post0);
these tests check what the harness reads from us: the YAML settings against our task settings, and the
utils.py hooks (docs, shots, per-example scores, F1 aggregation) against our own functions. utils.py imports
cerbero_hf, so it runs where cerbero-hf is installed beside lm-eval; test_lm_eval_harness.py runs lm-eval itself
in such a venv and compares its scores with ``cerbero-hf evaluate``'s.
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from conftest import FIXTURES, ROOT

from cerbero_hf.stages.evaluate import (
    TASKS,
    ShotSampler,
    evaluation_settings,
    load_examples,
    parse_label,
    prompt_format,
    task_configs,
)
from cerbero_hf.stages.evaluate.metrics import classification_scores
from cerbero_hf.stages.evaluate.runner import build_chats
from cerbero_hf.stages.evaluate.tasks import DATA

CONF = ROOT / "configs" / "lm_eval"
FIX = FIXTURES / "eval"
SETTINGS = evaluation_settings("it")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))


def _yaml(name: str) -> dict:
    return yaml.load((CONF / name).read_text(encoding="utf-8"), Loader=_Loader)


@pytest.fixture(scope="module")
def utils():
    spec = importlib.util.spec_from_file_location("cerbero_lm_eval_utils", CONF / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", TASKS)
def test_yaml_matches_task_settings(utils, name):
    conf = _yaml(f"cerbero_{name}.yaml")
    task = task_configs([name], SETTINGS)[0]
    assert conf["task"] == f"cerbero_{name}" and conf["tag"] == ["cerbero_it"]
    assert conf["custom_dataset"] == ("function", "utils.load_task") and conf["dataset_kwargs"] == {"task": name}
    assert "dataset_path" not in conf and "process_docs" not in conf  # the docs are load_task's, nothing else
    # the sampler sees the query only when the few-shot split is the test split; it draws from task.shot_split
    assert conf["test_split"] == conf["fewshot_split"] == task.eval_split
    assert conf["fewshot_config"] == {"sampler": ("function", "utils.CerberoShots")}
    assert conf["num_fewshot"] == task.shots
    assert (conf["doc_to_text"], conf["doc_to_target"]) == ("{{input}}", "{{target}}")
    assert conf["generation_kwargs"] == {"until": list(prompt_format("chat").stop), "do_sample": False,
                                         "max_gen_toks": task.max_new_tokens}
    assert conf["output_type"] == "generate_until"
    hooks = [v[1] for v in [conf["process_results"]] + [m["aggregation"] for m in conf["metric_list"]]
             if isinstance(v, tuple)]
    assert all(h.startswith("utils.") and hasattr(utils, h.split(".", 1)[1]) for h in hooks)


@pytest.mark.parametrize("name", TASKS)
def test_offline_yaml_is_the_task_over_the_bundled_files(name):
    conf = _yaml(f"cerbero_{name}_offline.yaml")
    assert conf == {"include": f"cerbero_{name}.yaml", "task": f"cerbero_{name}_offline", "tag": ["cerbero_it_offline"],
                    "metadata": {"version": _yaml(f"cerbero_{name}.yaml")["metadata"]["version"], "data_dir": "bundled"}}
    assert (DATA / name).is_dir()


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("data_dir", [str(FIX), "bundled"])
def test_load_task_gives_our_examples(utils, name, data_dir):
    # lm-eval passes the task's metadata (--metadata, --model_args merged in) and dataset_kwargs as keywords
    dataset = utils.load_task(task=name, data_dir=data_dir, seed=7, version=2.0, pretrained="some/model")
    assert list(dataset) == ["test"]
    task = task_configs([name], SETTINGS, data_dir=DATA if data_dir == "bundled" else data_dir)[0]
    ours = load_examples(task, task.eval_split)[0]
    docs = list(dataset["test"])
    assert [(d["id"], d["input"], d["target"], tuple(d["golds"])) for d in docs] == [
        (e.id, e.input, e.target, e.golds) for e in ours]
    assert {(d["task"], d["data_dir"], d["seed"]) for d in docs} == {(name, data_dir, 7)}


@pytest.mark.parametrize("name", TASKS)
def test_sampler_draws_our_shots(utils, name):
    docs = list(utils.load_task(task=name, data_dir="bundled")["test"])
    task = task_configs([name], SETTINGS, data_dir=DATA)[0]
    queries, pool = load_examples(task, task.eval_split)[0], load_examples(task, task.shot_split)[0]
    sampler = utils.CerberoShots()
    # the YAML's shot count: the shots `cerbero-hf evaluate` records for each query (seed 42), in order
    expected = build_chats(task, queries, pool, seed=42)[1]
    drawn = [sampler.sample(task.shots, eval_doc=doc) for doc in docs]
    assert [[s["id"] for s in shots] for shots in drawn] == expected
    assert all(s["input"] == next(e.input for e in pool if e.id == s["id"]) for shots in drawn for s in shots)
    # any other count (--num_fewshot), as ShotSampler draws it
    assert [[s["id"] for s in sampler.sample(2, eval_doc=doc)] for doc in docs] == [
        [s.id for s in ShotSampler(pool, 2, 42, task=name).shots_for(q)] for q in queries]
    assert sampler.sample(0, eval_doc=docs[0]) == []
    with pytest.raises(ValueError, match="fewshot_split"):
        sampler.sample(task.shots, eval_doc=None)


def test_process_results_and_aggregation(utils):
    doc = {"target": "IRONICO"}
    assert utils.process_results_ironita(doc, [" IRONICO\n[|Umano|] altro"])["accuracy"] == 100.0
    assert utils.process_results_ironita(doc, ["\nIRONICO\n"])["accuracy"] == 100.0  # the first non-empty line
    res = utils.process_results_ironita(doc, ["NON"])  # prefix of NON_IRONICO
    assert res["accuracy"] == 0.0 and res["macro_f1"][:2] == ("IRONICO", "NON_IRONICO")
    labels = ["IRONICO", "NON_IRONICO"]
    golds = ["IRONICO", "IRONICO", "NON_IRONICO", "NON_IRONICO"]
    answers = ["IRONICO", "boh", "NON_IRONICO", "IRONICO"]
    items = [utils.process_results_ironita({"target": g}, [a])["macro_f1"] for g, a in zip(golds, answers)]
    expected = classification_scores([parse_label(a, labels) for a in answers], golds, labels)
    assert utils.macro_f1(items) == pytest.approx(expected["macro_f1"])
    assert utils.weighted_f1(items) == pytest.approx(expected["weighted_f1"])
    squad = utils.process_results_squad({"golds": ["Italia"]}, [" l'Italia\n"])
    assert squad == {"exact_match": 100.0, "f1": 100.0, "exact_match_squad": 0.0, "f1_squad": 0.0}
