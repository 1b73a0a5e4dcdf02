"""The ``seeds`` stage: OASST message trees of one language -> root-to-leaf seed conversations (paper §3.1).

Config: :class:`SeedsConfig` (recipe section ``seeds``, CLI ``cerbero-hf seeds INPUT OUTPUT``).
Output: a Hub-layout folder with configs ``default`` (paths), ``messages`` (every kept message, which
seeds the diversity store) and ``rejected`` (dropped messages with their reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cerbero_hf.config import Config, setting
from cerbero_hf.outputs import writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output


@dataclass
class SeedsConfig(Config):
    """Where the OASST messages come from, and which language's trees to keep.

    Examples:
        >>> from cerbero_hf import SeedsConfig
        >>> SeedsConfig(input="oasst.jsonl")
        SeedsConfig(input='oasst.jsonl', split='train', language='it')
    """

    SECTION = "seeds"
    input: str = setting("OpenAssistant/oasst1", help="OASST message table: a file, a folder or a Hub dataset id.",
                         cli=False)
    split: str = setting("train", help="Split of a Hub dataset, e.g. 'train+validation'.")
    language: str = setting("it", help="Language code (OASST `lang`) or a language-pack YAML.")


@dataclass
class SeedsResult(Result):
    trees: int = 0
    paths: int = 0
    messages: int = 0
    rejected: dict = field(default_factory=dict)  # dropped messages per rule
    seeds: str | None = output()


@writes_output(lambda config, ctx: [config.input])
def run_seeds(config: SeedsConfig, ctx: Context) -> SeedsResult:
    """Read ``config.input``, build the trees of ``config.language`` and write ``ctx.output``."""
    import datasets

    from cerbero_hf.errors import InputError
    from cerbero_hf.io import load_table
    from cerbero_hf.languages import load_language
    from cerbero_hf.stages.seeds.oasst import build_seeds, write_seed_folder

    datasets.disable_progress_bars()
    code = load_language(config.language).code
    table = load_table(config.input, split=config.split)
    try:
        built = build_seeds(table, code)
    except InputError as err:
        if err.file is None:
            raise InputError(err.message, file=config.input, row=err.row, column=err.column) from None
        raise
    counts = write_seed_folder(built, ctx.output, code, source=config.input)
    rejected = {k[len("rejected ("):-1]: v for k, v in counts.items() if k.startswith("rejected (")}
    return SeedsResult(trees=counts["trees"], paths=counts["paths"], messages=counts["messages"], rejected=rejected,
                       seeds=str(ctx.output))


STAGE = Stage("seeds", SeedsConfig, run_seeds, SeedsResult, help=__doc__.splitlines()[0])
