"""The train stage's fixtures (auto-loaded by conftest.py as a pytest plugin), shared by its test modules.

* ``base_lm`` (module): a copy of the session's tiny chat Mistral, so no test can change the shared one.
* ``train_config(base, corpora, out, **settings)``: a tiny, fast ``TrainConfig`` over those two corpora.
* ``corpora`` (module): two Hub-layout corpora in our row schema, ``fauno`` (24 rows, Fauno's ``ai`` role) and
  ``generated`` (16 rows), each conversation a system prompt (dropped by the training set) and two exchanges.
"""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def base_lm(tiny_chat_lm, tmp_path_factory):
    return shutil.copytree(tiny_chat_lm, tmp_path_factory.mktemp("base") / "lm")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row
    from cerbero_hf.tiny_models import italian_sentences

    root, s = tmp_path_factory.mktemp("corpora"), italian_sentences(80)
    out = {}
    for name, n, role in (("fauno", 24, "ai"), ("generated", 16, "assistant")):
        rows = [make_row(f"{name}-{i}", [{"role": "system", "content": "Intestazione."},
                                         {"role": "user", "content": s[i]}, {"role": role, "content": s[-i - 1]},
                                         {"role": "user", "content": s[i + 1]}, {"role": role, "content": s[i + 2]}],
                         source=name) for i in range(n)]
        out[name] = str(save_hub_folder(root / name, {"default": Dataset.from_list(rows, features=features())}))
    return out


def train_config(base, corpora, out, **settings):
    """A ``TrainConfig`` for a few fast steps of the tiny model on the ``corpora`` fixture (``settings`` win)."""
    from cerbero_hf.stages.train.config import TrainConfig

    args = dict(model=str(base), corpora=[f"fauno={corpora['fauno']}", f"generated={corpora['generated']}"],
                output_dir=str(out), max_length=128, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                learning_rate=1e-3, warmup_steps=0, logging_steps=1, save_steps=2, eval_fraction=0.0)
    args.update(settings)
    return TrainConfig(**args)

