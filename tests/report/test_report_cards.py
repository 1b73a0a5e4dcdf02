"""A published corpus card carries its figures: the funnel of its stage counts and the NLL histogram, as PNG files
in the folder that ``publish`` uploads with it; a later card without them leaves no stale image behind."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


def _corpus(tmp_path):
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"k{i}", [{"role": "user", "content": f"Domanda {i}"}, {"role": "assistant", "content": "Sì."}],
                     "generated", {"nll": [1.0 + i / 10, 1.5]}) for i in range(4)]
    return save_hub_folder(tmp_path / "corpus", {"default": Dataset.from_list(rows, features=features())})


def test_card_shows_the_funnel_and_histogram_and_publish_uploads_them(tmp_path):
    import matplotlib.image

    from cerbero_hf.cards import dataset_card
    from cerbero_hf.stages.publish.files import dataset_files

    folder = _corpus(tmp_path)
    counts = {"seed conversations": 63, "generated conversations": 16, "kept after NLL filter": 4}
    dataset_card(folder, stage_counts=counts, nll=[1.0, 1.1, 1.5, 2.5])
    card = (folder / "README.md").read_text()
    assert "![Stage counts](images/funnel.png)" in card and "![NLL histogram](images/nll_histogram.png)" in card
    assert card.index("## Stage counts") < card.index("images/funnel.png") < card.index("## Pipeline parameters")
    image = folder / "images" / "funnel.png"
    assert image.read_bytes()[:8] == PNG and matplotlib.image.imread(image).shape[1] > 400
    assert {"images/funnel.png", "images/nll_histogram.png"} <= set(dataset_files(folder))

    dataset_card(folder, stage_counts={}, nll=None)  # nothing to draw now: the old images go
    assert not (folder / "images" / "funnel.png").exists() and "images/funnel.png" not in (folder / "README.md").read_text()


def test_without_matplotlib_the_card_has_no_images_and_says_so(tmp_path):
    folder = _corpus(tmp_path)
    code = ("import sys; sys.modules['matplotlib'] = None; from cerbero_hf.cards import dataset_card; "
            f"dataset_card({str(folder)!r}, stage_counts={{'seeds': 3}}, nll=[1.0, 2.0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no NLL histogram and no funnel figure" in done.stderr and "cerbero-hf[plot]" in done.stderr
    assert not (folder / "images").exists() and "images/" not in (folder / "README.md").read_text()
