"""``cerbero-hf score`` progress moves with every forward pass, not once per saved chunk of rows."""

from __future__ import annotations

import pytest

from cerbero_hf.schema import make_row
from cerbero_hf.stages.quality.folders import score_dataset
from cerbero_hf.stages.quality.pll import PLLScorer
from cerbero_hf.tiny_models import italian_sentences


def test_progress_advances_per_batch_and_adds_up_to_the_rows(tmp_path, tiny_mlm):
    import datasets

    from cerbero_hf.schema import features

    s = italian_sentences(40)
    rows = [make_row(f"c{i}", [{"role": "user", "content": s[i]}, {"role": "assistant", "content": s[i + 10]}])
            for i in range(10)]
    ds = datasets.Dataset.from_list(rows, features=features())
    scorer = PLLScorer(tiny_mlm, device="cpu", batch_tokens=64)  # a few copies per forward pass
    seen = []
    scored = score_dataset(ds, scorer, tmp_path, chunk_rows=10, progress=seen.append)
    assert len(scored) == 10
    assert len(seen) > 10  # many updates inside the one chunk of 10 rows
    assert all(n > 0 for n in seen) and seen[0] < 1
    assert sum(seen) == pytest.approx(10)

    # a resumed chunk (already on disk) advances by its rows at once
    seen.clear()
    score_dataset(ds, scorer, tmp_path, chunk_rows=10, progress=seen.append)
    assert seen == [10]
