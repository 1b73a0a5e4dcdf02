"""The Fauno refinement (paper §3.1) as a list of small rules, datatrove-style.

Formatters rewrite rows, filters keep a row or reject it with a reason (see :mod:`.base`). Each rule is
usable alone on a corpus in the row shape of :mod:`cerbero_hf.schema` (``id, messages, source, meta``):

=======================  ===========================================  ===========================================
rule (report row)        use alone                                    what it does
=======================  ===========================================  ===========================================
``Schema``               (the Refiner's reader)                       reject malformed input rows
``TagRepair``            ``ds.map(TagRepair("it", "input"))``         transcript text -> messages, tags repaired
``EmptyConversation``    ``ds.filter(EmptyConversation())``           no user/assistant text
``SystemPrompts``        ``ds.map(SystemPrompts())``                  drop the header / system messages
``TrailingUserTurns``    ``ds.map(TrailingUserTurns())``              trim trailing user turns (``turn_order``)
``TurnOrder``            ``ds.filter(TurnOrder())``                   strict user -> assistant alternation
``LanguageCheck``        ``ds.map(LanguageCheck("it"), batched=True)``  flag (or drop) English messages
``ForeignLanguage``      ``ds.filter(ForeignLanguage(action))``       conversations the language action removes
``DuplicateMajority``    ``ds.filter(DuplicateMajority())``           > 50 % of messages seen in earlier kept ones
=======================  ===========================================  ===========================================

:func:`default_rules` is the list the :class:`~cerbero_hf.stages.refine.refiner.Refiner` runs, in order;
the refinement report has one row per rule name, in the same order. Adding a rule: a class (one file
under ``rules/``) and one line in :func:`default_rules`.
"""

from __future__ import annotations

from cerbero_hf.languages import LanguagePack
from cerbero_hf.stages.refine.rules.base import CHAT_ROLES, Filter, Formatter, SequentialFilter, report_names, verdict
from cerbero_hf.stages.refine.rules.duplicates import DuplicateMajority, message_hashes, normalise
from cerbero_hf.stages.refine.rules.empty import EmptyConversation
from cerbero_hf.stages.refine.rules.language import LANG_ACTIONS, ForeignLanguage, LanguageCheck
from cerbero_hf.stages.refine.rules.schema import Schema
from cerbero_hf.stages.refine.rules.system_prompts import SystemPrompts
from cerbero_hf.stages.refine.rules.tag_repair import TagRepair
from cerbero_hf.stages.refine.rules.turn_order import TrailingUserTurns, TurnOrder

TRANSCRIPT = "transcript"  # where the Refiner's reader puts a Fauno row's transcript text

__all__ = ["CHAT_ROLES", "LANG_ACTIONS", "TRANSCRIPT", "DuplicateMajority", "EmptyConversation", "Filter",
           "ForeignLanguage", "Formatter", "LanguageCheck", "Schema", "SequentialFilter", "SystemPrompts",
           "TagRepair", "TrailingUserTurns", "TurnOrder", "default_rules", "message_hashes", "normalise",
           "report_names", "verdict"]


def default_rules(language: LanguagePack | str = "it", *, lang_action: str = "flag",
                  use_lingua: bool = True) -> list[Formatter | Filter]:
    """The refinement, in order. Sequential filters (duplicates) come last: they run after the parallel pass.

    Args:
        language: pack code or :class:`LanguagePack` (tags, header, language check).
        lang_action: ``flag``, ``drop-message`` or ``drop-conversation``.
        use_lingua: False: the language check's first pass only.

    Examples:
        >>> from cerbero_hf import default_rules
        >>> [rule.name for rule in default_rules("it")]
        ['schema', 'tag_repair', 'empty', 'system_prompt', 'turn_order', 'turn_order', 'language', 'language', 'duplicates']
    """
    return [
        Schema(),
        TagRepair(language, text_column=TRANSCRIPT),
        EmptyConversation(),
        SystemPrompts(),
        TrailingUserTurns(),
        TurnOrder(),
        LanguageCheck(language, action=lang_action, use_lingua=use_lingua),
        ForeignLanguage(lang_action),
        DuplicateMajority(),
    ]
