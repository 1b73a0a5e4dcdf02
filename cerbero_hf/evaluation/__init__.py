"""Few-shot evaluation as in the paper (METHOD.md §7): SQuAD-it 3-shot and EVALITA 5-shot.

- :mod:`~cerbero_hf.evaluation.tasks`: task settings (per language) and examples from the Hub or local folders.
- :mod:`~cerbero_hf.evaluation.prompts`: few-shot chats, prompt formats (chat template, Cerbero, Fauno,
  Camoscio) and the seeded shot sampler.
- :mod:`~cerbero_hf.evaluation.metrics`: SQuAD EM/F1 (language-aware and official normalisation),
  label parsing, accuracy / macro F1 / weighted F1.
- :mod:`~cerbero_hf.evaluation.generators`: local batched greedy generation, or an endpoint.
- :mod:`~cerbero_hf.evaluation.runner`: runs tasks and builds the results document.

Nothing here imports torch at module level.
"""

from cerbero_hf.evaluation.metrics import (UNKNOWN, classification_scores, normalize_italian, normalize_squad,
                                           parse_label, squad_metrics, squad_scores)
from cerbero_hf.evaluation.prompts import FORMATS, PromptFormat, ShotSampler, few_shot_messages, prompt_format
from cerbero_hf.evaluation.tasks import TASKS, Example, TaskConfig, evaluation_settings, load_examples, task_configs

__all__ = [
    "FORMATS", "TASKS", "UNKNOWN", "Example", "PromptFormat", "ShotSampler", "TaskConfig", "classification_scores",
    "evaluation_settings", "few_shot_messages", "load_examples", "normalize_italian", "normalize_squad",
    "parse_label", "prompt_format", "squad_metrics", "squad_scores", "task_configs",
]
