"""The YAML recipe, built from the stage registry, and the runner behind ``cerbero-hf run RECIPE.yaml``.

A recipe has ``output_dir``, ``language``, ``seed``, an optional ``engine`` section
(:class:`cerbero_hf.engine.EngineConfig`: where ``score`` and ``generate`` run) and one section per stage of
:data:`cerbero_hf.stages.NAMES`; each section holds that stage's config keys (the same names as its CLI
flags) plus ``enabled``. ``language`` and ``seed`` fill the sections that do not set their own. The engine is
not part of any stage's cache key: both engines write the same output.

Everything is checked when the recipe is loaded, before any stage runs: unknown keys, types, ranges and
choices of every section and ``--set`` override, and that every enabled stage's inputs come from an
enabled stage. Each stage writes into ``<output_dir>/<folder>/`` and records its config, typed result and
timing in ``<output_dir>/manifest.json``. A stage re-runs when its own config changes or when a stage it
reads from re-ran; it is taken from the manifest otherwise (``--force`` re-runs everything). Values like
``${TGI_URL}`` come from the environment (``${NAME:-default}`` gives a default; an unset variable without
one is an error); secrets are referenced by the *name* of their environment variable (``api_key_env``)
and never written anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cerbero_hf import distributed
from cerbero_hf.config import coerce, from_dict, load_yaml
from cerbero_hf.engine import EngineConfig
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import writes_output
from cerbero_hf.redact import redact
from cerbero_hf.stages import NAMES, get_stage
from cerbero_hf.stages.base import Context, Result

STAGES = NAMES
TOP_LEVEL = {"output_dir": str, "language": str, "seed": int}


@dataclass
class Recipe:
    """A whole run: top-level settings, one validated config per stage and which stages are enabled."""

    output_dir: str = "runs/cerbero"
    language: str = "it"
    seed: int = 42
    engine: EngineConfig = field(default_factory=EngineConfig)
    configs: dict[str, Any] = field(default_factory=dict)
    switches: dict[str, bool] = field(default_factory=dict)

    def __getattr__(self, name: str):
        configs = self.__dict__.get("configs", {})
        if name in configs:
            return configs[name]
        raise AttributeError(name)

    def section(self, name: str):
        return self.configs[name]

    def enabled(self, name: str) -> bool:
        return self.switches.get(name, get_stage(name).enabled)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"output_dir": self.output_dir, "language": self.language, "seed": self.seed,
                               "engine": config_dict(self.engine)}
        for name in NAMES:
            out[name] = {"enabled": self.enabled(name), **config_dict(self.configs[name])}
        return out


def config_dict(config) -> dict:
    """A config as plain JSON-able data (``to_dict`` when the config has its own, e.g. TRL's)."""
    import dataclasses

    data = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    return json.loads(json.dumps(data, default=str))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, key: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in strings (recursively); an unset ``${NAME}`` is an error."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise InputError(f"environment variable {m.group(1)} is not set (write ${{{m.group(1)}:-default}} "
                             f"for a default)", column=key or None)
        return _ENV.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, key) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    return value


def parse_recipe(data: dict, file: str | None = None) -> Recipe:
    """Validate a recipe mapping into a :class:`Recipe`; every error names its key (``generate.threshold``)."""
    if not isinstance(data, dict):
        raise InputError("a recipe must be a YAML mapping", file=file)
    known = list(TOP_LEVEL) + [EngineConfig.SECTION] + list(NAMES)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"unknown recipe section {unknown[0]!r}; expected {', '.join(known)}", file=file,
                         column=unknown[0])
    top = {k: coerce(data[k], tp, k) for k, tp in TOP_LEVEL.items() if k in data}
    engine = data.get(EngineConfig.SECTION) or {}
    if not isinstance(engine, dict):
        raise InputError(f"section {EngineConfig.SECTION!r} must be a mapping", file=file, column=EngineConfig.SECTION)
    # an empty value (``address: ${RAY_ADDRESS:-}``) means "not set"
    recipe = Recipe(**top, engine=from_dict(EngineConfig, {k: v for k, v in engine.items() if v != ""}, file=file))
    defaults = {"language": recipe.language, "seed": recipe.seed}
    for name in NAMES:
        stage = get_stage(name)
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise InputError(f"section {name!r} must be a mapping", file=file, column=name)
        section = dict(section)
        if "enabled" in section:
            recipe.switches[name] = coerce(section.pop("enabled"), bool, f"{name}.enabled")
        loader = getattr(stage.config, "from_recipe", None)
        recipe.configs[name] = (loader(section, file=file, defaults=defaults, enabled=recipe.enabled(name)) if loader
                                else from_dict(stage.config, section, file=file, defaults=defaults))
    check_inputs(recipe, file)
    return recipe


def check_inputs(recipe: Recipe, file: str | None = None) -> None:
    """Every enabled stage reads from enabled stages (all of its inputs, or one of them for ``any_of``), unless its
    section names its inputs itself (``train.corpora``)."""
    for name in NAMES:
        stage = get_stage(name)
        if not recipe.enabled(name) or not stage.inputs or getattr(recipe.configs[name], "corpora", None):
            continue
        on = [i for i in stage.inputs if recipe.enabled(i)]
        if (stage.any_of and not on) or (not stage.any_of and len(on) < len(stage.inputs)):
            missing = [i for i in stage.inputs if not recipe.enabled(i)]
            need = " or ".join(stage.inputs) if stage.any_of else missing[0]
            raise InputError(f"stage {name!r} reads the output of {need!r}, which is disabled: enable it or set "
                             f"{name}.enabled: false", file=file, column=f"{name}.enabled")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``section.key=value`` strings (values parsed as YAML) into the recipe mapping."""
    import yaml

    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} is not section.key=value", column="--set")
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise InputError(f"override {item!r}: {p} is not a section", column=key)
            node = child
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[leaf] = raw
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a recipe YAML; ``overrides`` are ``section.key=value`` strings (YAML-typed).

    Examples:
        >>> from pathlib import Path
        >>> from cerbero_hf import load_recipe
        >>> _ = Path("recipe.yaml").write_text("{output_dir: out/run, generate: {endpoint: 'http://127.0.0.1:8080'}}")
        >>> load_recipe("recipe.yaml", ["filter.max_nll=1.5"]).configs["filter"]
        FilterConfig(max_nll=1.5, policy='truncate')
    """
    data = apply_overrides(load_yaml(path, "recipe"), overrides or [])
    try:
        return parse_recipe(expand_env(data), file=str(path))
    except InputError as err:
        if err.file is None:
            raise InputError(err.message, file=str(path), row=err.row, column=err.column) from None
        raise


def config_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Manifest:
    """``manifest.json``: what ran, with which config, its typed result, timings and output paths."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"stages": {}}

    def done(self, stage: str, digest: str) -> bool:
        entry = self.data["stages"].get(stage)
        return bool(entry and entry.get("status") == "done" and entry.get("config_hash") == digest)

    def result(self, stage: str) -> dict | None:
        entry = self.data["stages"].get(stage)
        return entry.get("result") if entry and entry.get("status") == "done" else None

    def record(self, stage: str, **entry) -> None:
        """Record ``stage``'s entry and write the file (under a launcher, the main process writes it)."""
        self.data["stages"][stage] = entry
        if not distributed.is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False, default=str))
        tmp.replace(self.path)


def check_launched_stages(recipe: Recipe, manifest: Manifest, only: list[str] | None, force: bool) -> None:
    """Under a launcher (``torchrun``, ``accelerate launch``) only the train stage runs, on every rank: a run that
    would also run a data stage is refused in one line (run those first in one process)."""
    if not distributed.launched():
        return
    digests: dict[str, str] = {}
    pending = []
    for name in NAMES:
        if not recipe.enabled(name):
            continue
        digests[name] = stage_digest(recipe, name, digests)
        if (not only or name in only) and (force or not manifest.done(name, digests[name])):
            pending.append(name)
    others = [name for name in pending if name != "train"]
    if others:
        raise InputError(f"under {distributed.launcher()} only the train stage runs, and this run would also run "
                         f"{', '.join(others)}: run the data stages first in one process (cerbero-hf run RECIPE "
                         f"--only {','.join(others)}), then launch with --only train", column="--only")


def stage_digest(recipe: Recipe, name: str, digests: dict[str, str]) -> str:
    """A stage's cache key: its own config and the keys of the stages it reads (not unrelated stages)."""
    stage = get_stage(name)
    upstream = {i: digests[i] for i in stage.inputs if i in digests}
    return config_hash({"stage": name, "config": config_dict(recipe.configs[name]), "inputs": upstream})


# output_dir is locked for the whole run (one run per output_dir); its stage folders are each checked by their stage
@writes_output(lambda *_, **__: (), output=lambda recipe, **_: recipe.output_dir, overwrite=lambda *_, **__: True)
def run_recipe(recipe: Recipe, *, only: list[str] | None = None, force: bool = False,
               on_stage: Callable[[str, str, Result | None], None] | None = None, overwrite: bool = False,
               on_event: Callable[[str, str, dict], None] | None = None) -> Manifest:
    """Run the enabled stages in order; returns the manifest. ``on_stage(stage, status, result)`` reports progress:
    ``running`` when a stage starts, then ``done``; ``cached`` (taken from the manifest) or ``skipped``.
    ``on_event(stage, event, stats)`` receives what the running stage reports as it works (its ``ctx.on_event``).

    ``overwrite``: stages may write into folders holding files cerbero-hf did not write (``run --overwrite``).

    Examples:
        >>> manifest = run_recipe(load_recipe("configs/cerbero-7b.yaml"), only=["seeds"])  # doctest: +SKIP
    """
    out = Path(recipe.output_dir)
    manifest = Manifest(out / "manifest.json")
    manifest.data["recipe"] = redact(recipe.to_dict())
    digests: dict[str, str] = {}
    results: dict[str, Result] = {}
    check_launched_stages(recipe, manifest, only, force)
    if not distributed.is_main():  # under a launcher the main process reports
        on_stage = on_event = None
    for name in NAMES:
        stage = get_stage(name)
        if not recipe.enabled(name):
            if on_stage:
                on_stage(name, "skipped", None)
            continue
        digest = digests[name] = stage_digest(recipe, name, digests)
        previous = manifest.result(name)
        if (only and name not in only) or (not force and manifest.done(name, digest)):
            if previous is not None:
                results[name] = stage.result.from_dict(previous)
            if on_stage:
                on_stage(name, "skipped" if only and name not in only else "cached", results.get(name))
            continue
        start = time.time()
        manifest.record(name, status="running", config_hash=digest, started=start)
        if on_stage:
            on_stage(name, "running", None)
        ctx = Context(output=out / stage.folder, inputs={i: results[i] for i in stage.inputs if i in results},
                      configs={i: recipe.configs[i] for i in stage.inputs if recipe.enabled(i)},
                      language=recipe.language, seed=recipe.seed, overwrite=overwrite, engine=recipe.engine, rerun=True,
                      on_event=functools.partial(on_event, name) if on_event else None)  # (event, stats) of this stage
        result = stage.run(recipe.configs[name], ctx)
        results[name] = result
        manifest.record(name, status="done", config_hash=digest, seconds=round(time.time() - start, 2),
                        counts=result.counts(), outputs=result.outputs(), result=result.to_dict(),
                        config=redact(config_dict(recipe.configs[name])))
        if on_stage:
            on_stage(name, "done", result)
    return manifest
