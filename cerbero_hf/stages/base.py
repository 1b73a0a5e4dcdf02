"""What a stage is: a config dataclass, the earlier outputs it reads, and ``run(config, ctx) -> Result``.

The recipe runner (:mod:`cerbero_hf.recipe`) and each stage's CLI command (:mod:`cerbero_hf.cli`) both go
through this one unit, so a setting is declared once (in the config) and a stage's inputs come from the
runner as typed results, never from reading the manifest::

    @dataclass
    class SeedsConfig(Config):
        SECTION = "seeds"
        split: str = setting("train", help="Split of a Hub dataset.")

    @dataclass
    class SeedsResult(Result):
        paths: int = 0
        seeds: str = output()        # an output path (a folder the next stages read)

    STAGE = Stage("seeds", SeedsConfig, run_seeds, inputs=())

Results are dataclasses: their numeric fields are the counts shown by ``cerbero-hf run`` and recorded in
``manifest.json``; fields declared with :func:`output` are paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cerbero_hf.errors import InputError


def output(default: str | None = None) -> Any:
    """A result field that holds an output path (shown under 'outputs', read by later stages)."""
    return field(default=default, metadata={"output": True})


@dataclass
class Result:
    """Base of a stage's typed result: counts as fields, output paths as :func:`output` fields."""

    def counts(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata.get("output") and getattr(self, f.name) is not None}

    def outputs(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("output") and getattr(self, f.name)}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass
class Context:
    """What the runner (or a CLI command) hands a stage.

    Attributes:
        output: the stage's own output folder.
        inputs: the results of the stages it declared as inputs (name -> typed result; absent when that
            stage is disabled in the recipe).
        language / seed: the run's language pack code and global seed (a config's own fields win).
        on_event: optional progress callback ``(event, stats)`` for a console.
        command: the command line that produced the output (for cards), when run from the CLI.
        configs: the configs of the stages it reads (name -> config), for cards that name their models.
        overwrite: write into an output folder that holds files cerbero-hf did not write (``--overwrite``;
            see :mod:`cerbero_hf.outputs`), or one of this stage's outputs written with other settings.
        rerun: the caller owns the folder as this stage's (a recipe re-running a stage whose settings changed):
            other settings than the folder's last run are expected, not refused.
        engine: where the heavy work runs (:class:`cerbero_hf.engine.EngineConfig`; ``None``: in this process).
    """

    output: Path
    inputs: dict[str, Result] = field(default_factory=dict)
    language: str = "it"
    seed: int = 42
    on_event: Callable[[str, dict], None] | None = None
    command: str | None = None
    configs: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    engine: Any = None
    rerun: bool = False

    def input(self, name: str) -> Result:
        """The result of the earlier stage ``name``, or an input error saying which stage to enable."""
        if name not in self.inputs:
            raise InputError(f"this stage needs the output of {name!r}: run it first (or enable it in the recipe)",
                             column=name)
        return self.inputs[name]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: recipe section and manifest key.
        config: its config dataclass (every setting, declared once).
        run: ``run(config, ctx) -> result``.
        result: its result dataclass.
        inputs: earlier stages whose outputs it reads (``any_of``: at least one must be enabled).
        any_of: True when any one of ``inputs`` is enough (score reads generate and/or refine).
        enabled: enabled unless the recipe says ``enabled: false``.
        folder: its output folder under the recipe's ``output_dir`` (default: the stage name).
    """

    name: str
    config: type
    run: Callable[[Any, Context], Result]
    result: type
    inputs: tuple[str, ...] = ()
    any_of: bool = False
    enabled: bool = True
    folder: str = ""
    help: str = ""

    def __post_init__(self) -> None:
        if not self.folder:
            object.__setattr__(self, "folder", self.name)
