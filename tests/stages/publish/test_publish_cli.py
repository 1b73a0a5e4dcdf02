"""The shape of ``cerbero-hf publish``: ``REPO_ID PATH [--repo-type dataset|model|space]``, as ``hf upload``.

Against the Hub emulator, through the CLI in a subprocess. The earlier shape (``FOLDER REPO_ID``, ``--kind``)
still publishes, with one deprecation line per old spelling.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, run_cli

METRIC = ROOT / "dataset_scripts" / "mlm_nll"


def corpus(path: Path) -> Path:
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"c{i}", [{"role": "user", "content": f"Domanda {i}?"},
                               {"role": "assistant", "content": f"Risposta {i}."}], "generated", {})
            for i in range(3)]
    return save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())})


def deprecations(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Deprecated:")]


def test_repo_id_then_path_with_a_repo_type(hub_emulator, hub_env, tmp_path):
    folder = corpus(tmp_path / "corpus")
    out = run_cli(["publish", "user/cli-shape", folder], env=hub_env)  # --repo-type dataset is the default
    assert out.returncode == 0, out.stderr[-2000:]
    assert deprecations(out.stderr) == []
    files = hub_emulator.files("dataset", "user/cli-shape")
    assert "README.md" in files and any(p.endswith(".parquet") for p in files)
    assert not hub_emulator.repos[("datasets", "user/cli-shape")].private  # corpora: public unless --private

    out = run_cli(["publish", "cli-shape/mlm_nll", METRIC, "--repo-type", "space", "--private"], env=hub_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mlm_nll.py" in hub_emulator.files("space", "cli-shape/mlm_nll")
    assert hub_emulator.repos[("spaces", "cli-shape/mlm_nll")].private


def test_the_earlier_shape_still_works_with_a_deprecation_line(hub_emulator, hub_env, tmp_path):
    folder = corpus(tmp_path / "corpus")
    out = run_cli(["publish", "user/cli-old", folder], env=hub_env)
    assert out.returncode == 0, out.stderr[-2000:]
    commits = len(hub_emulator.repos[("datasets", "user/cli-old")].commits)

    # FOLDER REPO_ID: the same upload (nothing changed, so no new commit), one line saying how to write it now.
    out = run_cli(["publish", folder, "user/cli-old"], env=hub_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert deprecations(out.stderr) == [f"Deprecated: `publish {folder} user/cli-old` (FOLDER REPO_ID); write "
                                        f"`publish user/cli-old {folder}` (REPO_ID PATH, as `hf upload`)."]
    assert "nothing changed" in out.stdout
    assert len(hub_emulator.repos[("datasets", "user/cli-old")].commits) == commits

    # --kind metric is --repo-type space.
    out = run_cli(["publish", METRIC, "cli-old/mlm_nll", "--kind", "metric"], env=hub_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(deprecations(out.stderr)) == 2 and "write --repo-type space" in out.stderr
    assert "mlm_nll.py" in hub_emulator.files("space", "cli-old/mlm_nll")


def test_a_bad_repo_type_is_one_line_before_any_request(hub_emulator, hub_env, tmp_path):
    folder = corpus(tmp_path / "corpus")
    hub_emulator.reset_log()
    for flag, value, allowed in (("--repo-type", "metric", "dataset, model or space"),
                                 ("--kind", "space", "dataset, model or metric")):
        out = run_cli(["publish", "user/cli-bad", folder, flag, value], env=hub_env)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.splitlines() == [f"Error: {flag} must be {allowed}, got {value!r}"
                                           + (" (deprecated: use --repo-type)" if flag == "--kind" else "")]
    assert [r for r in hub_emulator.log if "cli-bad" in r.path] == []
