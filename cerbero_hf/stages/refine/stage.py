"""The ``refine`` stage: existing Fauno-style corpora -> one refined corpus (paper §3.1).

Config: :class:`RefineConfig` (recipe section ``refine``, CLI ``cerbero-hf refine INPUT OUTPUT``).
Input: ``config.inputs`` (files, folders or Hub ids, refined together as one corpus, in order, streamed in
chunks), rows in ``messages`` form or one Fauno transcript column. Output: a Hub-layout folder with configs
``default`` (kept conversations, columns ``id, messages, source, meta``) and ``rejected`` (every removed one,
whichever rule removed it, plus ``rule`` and ``reason``: kept + rejected = input rows), and
``refine_report.json`` (the report: per rule, conversations removed and messages changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cerbero_hf.config import Config, setting
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output
from cerbero_hf.stages.refine.rules.language import LANG_ACTIONS

FAUNO = ["andreabac3/Quora-Italian-Fauno-Baize", "andreabac3/StackOverflow-Italian-Fauno-Baize",
         "andreabac3/MedQuaAD-Italian-Fauno-Baize"]


@dataclass
class RefineConfig(Config):
    """Which corpora to refine, and how.

    Examples:
        >>> from cerbero_hf import RefineConfig
        >>> RefineConfig().inputs[0]  # the three Fauno corpora by default
        'andreabac3/Quora-Italian-Fauno-Baize'
        >>> RefineConfig(inputs=["fauno.jsonl"], lang_action="drop")
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: column 'refine.lang_action': refine.lang_action must be flag, drop-message or ...
    """

    SECTION = "refine"
    inputs: list[str] = setting(help="Corpora refined together: files, folders or Hub dataset ids.",
                                default_factory=lambda: list(FAUNO), cli=False)
    language: str = setting("it", help="Language pack: built-in code or YAML file.")
    lang_action: str = setting("flag", help="What to do with messages detected as English (the paper flags "
                                            "them and removes nothing).", choices=LANG_ACTIONS)
    text_column: str | None = setting(None, help="Transcript column (default: `messages` rows, else "
                                                 "input/text/conversation/...).")
    num_proc: int = setting(1, help="Worker processes for the parallel rules.", ge=1)
    license: str = setting("unknown", help="License field of the output dataset card.")
    use_lingua: bool = setting(True, help="Ask Lingua about the sentences the function-word pass leaves "
                                          "uncertain (--no-use-lingua: first pass only, faster).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.inputs:
            raise InputError("refine.inputs must name at least one corpus", column="refine.inputs")


@dataclass
class RefineResult(Result):
    """Counts of one refinement: rows read, kept and rejected; per rule, in the rule list's order,
    conversations removed (``removed``, every rule) and messages changed (``changed``, every formatter)."""

    input: int = 0
    kept: int = 0
    rejected: int = 0
    removed: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)
    refined: str | None = output()


def _event(ctx: Context, name: str, **stats) -> None:
    if ctx.on_event is not None:
        ctx.on_event(name, stats)


@writes_output(lambda config, ctx: config.inputs)
def run_refine(config: RefineConfig, ctx: Context) -> RefineResult:
    """Load ``config.inputs`` (refined as one corpus, in order), run every rule and write the Hub-layout folder
    ``ctx.output``. The rows are streamed in chunks, so memory does not grow with the corpus.

    Events for a console (``ctx.on_event``): ``loading`` (inputs), ``refining`` (rows; the datasets progress
    bar "Refining" follows), ``writing`` (kept, rejected).
    """
    from cerbero_hf.stages.refine.reader import load_parts
    from cerbero_hf.stages.refine.refiner import Refiner

    _event(ctx, "loading", inputs=", ".join(config.inputs))
    parts = load_parts(config.inputs)
    refiner = Refiner(config.language, lang_action=config.lang_action, text_column=config.text_column,
                      num_proc=config.num_proc, use_lingua=config.use_lingua)
    for part in parts:
        refiner.check_input(part, file=part.file)
    _event(ctx, "refining", rows=sum(len(part) for part in parts))
    report = refiner.refine_to(parts, ctx.output, license=config.license,
                               on_event=lambda name, stats: _event(ctx, name, **stats))
    return RefineResult(input=report.input_rows, kept=report.kept, rejected=report.input_rows - report.kept,
                        removed={rule: removed for rule, removed, _ in report.rows()},
                        changed=dict(report.changed), refined=str(ctx.output))


STAGE = Stage("refine", RefineConfig, run_refine, RefineResult, folder="refined", help=__doc__.splitlines()[0])
