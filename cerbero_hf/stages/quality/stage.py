"""The ``score`` and ``filter`` stages: MLM pseudo-log-likelihood of every message, then the NLL cut (paper §3.4, §4).

- ``score`` (:class:`ScoreConfig`, recipe section ``score``): reads the ``generate`` stage's corpus
  (``generated``) and/or the ``refine`` stage's (``refined``) and writes each, every row kept, under its own
  folder ``<output>/<corpus>`` with ``meta`` carrying ``nll`` (one per message), ``nll_tokens``, ``nll_mean``,
  ``nll_model`` and ``nll_variant``.
- ``filter`` (:class:`FilterConfig`, recipe section ``filter``): applies
  :class:`~cerbero_hf.stages.quality.filter.QualityFilter` to each scored corpus separately and writes
  ``<output>/<corpus>`` with configs ``default`` (kept rows) and ``rejected`` (removed parts, ``rule`` and
  ``reason``).

The CLI ``cerbero-hf score INPUT OUTPUT`` runs both on one corpus (flags from both configs).
"""

from __future__ import annotations

from dataclasses import dataclass

from cerbero_hf.config import Config, setting
from cerbero_hf.outputs import result_paths, writes_output
from cerbero_hf.stages.base import Context, Result, Stage, output
from cerbero_hf.stages.quality.filter import POLICIES
from cerbero_hf.stages.quality.pll import VARIANTS

DTYPES = ("float32", "float16", "bfloat16")
# corpus name -> (input stage, attribute of its result holding the corpus folder)
CORPORA = {"generated": ("generate", "generated"), "refined": ("refine", "refined")}


@dataclass
class ScoreConfig(Config):
    """Which masked LM scores the messages, and how.

    Examples:
        >>> from cerbero_hf import ScoreConfig
        >>> ScoreConfig(variant="word_l2r", dtype="bfloat16").model is None  # None: the language pack's ``mlm``
        True
    """

    SECTION = "score"
    model: str | None = setting(None, help="Masked LM (Hub id or folder); default: the language pack's `mlm`.")
    variant: str = setting("pll", help="pll (the paper's plain PLL) or word_l2r (Kauf & Ivanova 2023: also mask "
                                       "the later sub-tokens of the same word).", choices=VARIANTS)
    batch_tokens: int | None = setting(None, help="Tokens per forward pass (rows × length); default: sized to "
                                                  "the model and device.", ge=1)
    device: str | None = setting(None, help="cpu, cuda, cuda:1, ...; default: CUDA when available.")
    dtype: str | None = setting(None, help="Model dtype; default float32 (log-softmax always runs in float32).",
                                choices=DTYPES)
    chunk_rows: int = setting(256, help="Rows scored (and saved for resuming) per chunk.", ge=1)
    language: str = setting("it", help="Language pack (built-in code or YAML file) whose `mlm` is the default model.")


@dataclass
class FilterConfig(Config):
    """The NLL cut: a message passes when its NLL is strictly below ``max_nll``.

    Examples:
        >>> from cerbero_hf import FilterConfig
        >>> FilterConfig(max_nll=2.5, policy="drop_message")
        FilterConfig(max_nll=2.5, policy='drop_message')
        >>> FilterConfig(max_nll=0)
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: column 'filter.max_nll': filter.max_nll must be > 0, got 0
    """

    SECTION = "filter"
    max_nll: float = setting(2.0, help="Keep messages with NLL strictly below this (the paper's 2).", gt=0)
    policy: str = setting("truncate", help="What a failing message removes: truncate (the conversation from it "
                                           "on), drop_conversation or drop_message.", choices=POLICIES)


@dataclass
class ScoreResult(Result):
    """Messages with a score (a message with no scorable token has none) and their mean NLL, per corpus
    (``None`` for a corpus that was not scored)."""

    generated_messages: int | None = None
    generated_mean_nll: float | None = None
    refined_messages: int | None = None
    refined_mean_nll: float | None = None
    generated: str | None = output()
    refined: str | None = output()


@dataclass
class FilterResult(Result):
    """Rows kept and parts rejected, per corpus (``None`` for a corpus that was not filtered)."""

    generated_kept: int | None = None
    generated_rejected: int | None = None
    refined_kept: int | None = None
    refined_rejected: int | None = None
    generated: str | None = output()
    refined: str | None = output()


def resolve_model(config: ScoreConfig) -> str:
    """The masked LM to load: ``config.model``, else the language pack's ``mlm``.

    Raises:
        InputError: the pack names no masked LM and none was given.
    """
    if config.model:
        return config.model
    from cerbero_hf.errors import InputError
    from cerbero_hf.languages import load_language

    pack = load_language(config.language)
    if not pack.mlm:
        raise InputError(f"language pack {pack.code!r} names no masked LM (mlm): set score.model",
                         column="score.model")
    return pack.mlm


def make_scorer(config: ScoreConfig):
    """A :class:`~cerbero_hf.stages.quality.pll.PLLScorer` built from ``config`` (the model loads on first use)."""
    from cerbero_hf.stages.quality.pll import PLLScorer

    return PLLScorer(resolve_model(config), device=config.device, dtype=config.dtype,
                     batch_tokens=config.batch_tokens, variant=config.variant)


def _corpus_inputs(ctx: Context) -> dict[str, str]:
    """Corpus name -> folder, for every corpus an enabled input stage produced."""
    found = {}
    for name, (stage, attr) in CORPORA.items():
        result = ctx.inputs.get(stage)
        path = getattr(result, attr, None) if result is not None else None
        if path:
            found[name] = str(path)
    return found


@writes_output(lambda config, ctx: result_paths(ctx, *CORPORA.values()))
def run_score(config: ScoreConfig, ctx: Context) -> ScoreResult:
    """Score every message of the generated and/or refined corpus, each into ``ctx.output/<corpus>``.

    Input columns: ``id``, ``messages``, ``source``, ``meta``. Output: the same rows, all kept, with the
    per-message NLLs in ``meta``. Events for a console (``ctx.on_event``): ``scoring`` (``corpus``, rows
    ``done`` and ``total``) after every forward pass (after every block of rows on Ray: ``ctx.engine``).
    """
    from cerbero_hf.errors import InputError
    from cerbero_hf.stages.quality.folders import score_folder

    corpora = _corpus_inputs(ctx)
    if not corpora:
        raise InputError("stage 'score' found no corpus: enable 'generate' or 'refine'")
    scorer = make_scorer(config)
    result = ScoreResult()
    on_event = ctx.on_event
    for name, src in corpora.items():
        dest = ctx.output / name
        progress = None
        if on_event is not None:
            def progress(done, total, name=name):
                on_event("scoring", {"corpus": name, "done": done, "total": total})
        summary = score_folder(src, dest, scorer, chunk_rows=config.chunk_rows, progress=progress, engine=ctx.engine)
        setattr(result, f"{name}_messages", summary["count"])
        setattr(result, f"{name}_mean_nll", round(summary["mean"], 4) if summary["count"] else None)
        setattr(result, name, str(dest))
    return result


@writes_output(lambda config, ctx: result_paths(ctx, ("score", "generated"), ("score", "refined")))
def run_filter(config: FilterConfig, ctx: Context) -> FilterResult:
    """Apply the NLL cut to each scored corpus separately, into ``ctx.output/<corpus>``.

    Input: the ``score`` stage's folders (``meta["nll"]`` per message). Output configs: ``default`` (kept
    rows, failing messages removed per ``policy``) and ``rejected`` (removed parts with ``rule`` and ``reason``).
    """
    from cerbero_hf.errors import InputError
    from cerbero_hf.stages.quality.filter import QualityFilter
    from cerbero_hf.stages.quality.folders import filter_folder

    scored = ctx.input("score")
    quality = QualityFilter(max_nll=config.max_nll, policy=config.policy)
    result = FilterResult()
    for name in CORPORA:
        src = getattr(scored, name, None)
        if not src:
            continue
        dest = ctx.output / name
        kept, rejected = filter_folder(src, dest, quality)
        setattr(result, f"{name}_kept", kept)
        setattr(result, f"{name}_rejected", rejected)
        setattr(result, name, str(dest))
    if result.generated is None and result.refined is None:
        raise InputError("stage 'filter' found no scored corpus: enable 'score'")
    return result


STAGES = {
    "score": Stage("score", ScoreConfig, run_score, ScoreResult, inputs=("generate", "refine"), any_of=True,
                   folder="scored", help="Score every message with a masked LM (pseudo-log-likelihood, paper §3.4)."),
    "filter": Stage("filter", FilterConfig, run_filter, FilterResult, inputs=("score",), folder="filtered",
                    help="Keep messages with MLM NLL strictly below max_nll (paper §4), per corpus."),
}
