"""The lm-evaluation-harness task YAMLs in configs/lm_eval/ agree with ``cerbero-hf evaluate``.

lm-eval itself is not in our venv (installing it would downgrade python-dateutil 4.0.0 -> 2.9.0.post0);
these tests check what the harness reads from us: the YAML settings against our task settings, and the
utils.py hooks (docs processing, per-example scores, F1 aggregation) against our own functions.
"""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from conftest import FIXTURES, ROOT

from cerbero_hf.stages.evaluate import TASKS, evaluation_settings, load_examples, parse_label, task_configs
from cerbero_hf.stages.evaluate.metrics import classification_scores

CONF = ROOT / "configs" / "lm_eval"
FIX = FIXTURES / "eval"
SETTINGS = evaluation_settings("it")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))


@pytest.fixture(scope="module")
def utils():
    spec = importlib.util.spec_from_file_location("cerbero_lm_eval_utils", CONF / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", TASKS)
def test_yaml_matches_task_settings(name):
    conf = yaml.load((CONF / f"cerbero_{name}.yaml").read_text(encoding="utf-8"), Loader=_Loader)
    task = task_configs([name], SETTINGS)[0]
    assert conf["task"] == f"cerbero_{name}" and conf["tag"] == ["cerbero_it"]
    assert (conf["dataset_path"], conf["dataset_name"]) == (task.dataset, task.config)
    assert ((conf["num_fewshot"], conf["fewshot_split"], conf["test_split"])
            == (task.shots, task.shot_split, task.eval_split))
    assert conf["generation_kwargs"]["max_gen_toks"] == task.max_new_tokens
    assert conf["generation_kwargs"]["do_sample"] is False and "\n" in conf["generation_kwargs"]["until"]
    assert conf["output_type"] == "generate_until"
    hooks = [v[1] for v in [conf["process_results"]] + [m["aggregation"] for m in conf["metric_list"]]
             if isinstance(v, tuple)]
    assert all(h.startswith("utils.") for h in hooks)


@pytest.mark.parametrize("name", ["sentipolc", "ironita", "ami2020"])
def test_process_docs_keeps_the_same_examples(utils, name):
    import datasets

    raw = datasets.load_dataset(str(FIX / name), split="test")
    docs = getattr(utils, f"process_docs_{name}")(raw)
    task = task_configs([name], SETTINGS, data_dir=FIX)[0]
    ours = load_examples(task, "test")[0]
    assert [(d["id"], d["input"], d["label_word"]) for d in docs] == [(e.id, e.input, e.target) for e in ours]


def test_process_results_and_aggregation(utils):
    doc = {"label_word": "IRONICO"}
    assert utils.process_results_ironita(doc, [" IRONICO\n[|Umano|] altro"])["accuracy"] == 100.0
    res = utils.process_results_ironita(doc, ["NON"])  # prefix of NON_IRONICO
    assert res["accuracy"] == 0.0 and res["macro_f1"][:2] == ("IRONICO", "NON_IRONICO")
    labels = ["IRONICO", "NON_IRONICO"]
    golds = ["IRONICO", "IRONICO", "NON_IRONICO", "NON_IRONICO"]
    answers = ["IRONICO", "boh", "NON_IRONICO", "IRONICO"]
    items = [utils.process_results_ironita({"label_word": g}, [a])["macro_f1"] for g, a in zip(golds, answers)]
    expected = classification_scores([parse_label(a, labels) for a in answers], golds, labels)
    assert utils.macro_f1(items) == pytest.approx(expected["macro_f1"])
    assert utils.weighted_f1(items) == pytest.approx(expected["weighted_f1"])
    squad = utils.process_results_squad({"answers": {"text": ["Italia"], "answer_start": [0]}}, [" l'Italia\n"])
    assert squad == {"exact_match": 100.0, "f1": 100.0, "exact_match_squad": 0.0, "f1_squad": 0.0}
