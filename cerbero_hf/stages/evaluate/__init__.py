"""Few-shot evaluation as in the paper (§4.2): SQuAD-it 3-shot and EVALITA 5-shot.

- :mod:`~cerbero_hf.stages.evaluate.tasks`: task settings (per language) and examples from the Hub or local folders.
- :mod:`~cerbero_hf.stages.evaluate.prompts`: few-shot chats, prompt formats (chat template, Cerbero, Fauno,
  Camoscio) and the seeded shot sampler.
- :mod:`~cerbero_hf.stages.evaluate.metrics`: SQuAD EM/F1 (language-aware and official normalisation),
  label parsing, accuracy / macro F1 / weighted F1.
- :mod:`~cerbero_hf.stages.evaluate.generators`: local batched greedy generation, or an endpoint.
- :mod:`~cerbero_hf.stages.evaluate.runner`: runs tasks and builds the results document.
- :mod:`~cerbero_hf.stages.evaluate.stage`: the stage unit: ``EvaluateConfig``, ``EvaluateResult``,
  ``run_evaluate`` (the recipe's) and ``evaluate_model`` (the CLI's).

Nothing here imports torch at module level.
"""

from cerbero_hf.stages.evaluate.metrics import (
    UNKNOWN,
    classification_scores,
    normalize_italian,
    normalize_squad,
    parse_label,
    squad_metrics,
    squad_scores,
)
from cerbero_hf.stages.evaluate.prompts import FORMATS, PromptFormat, ShotSampler, few_shot_messages, prompt_format
from cerbero_hf.stages.evaluate.tasks import (
    TASKS,
    Example,
    TaskConfig,
    evaluation_settings,
    load_examples,
    task_configs,
)

__all__ = [
    "FORMATS", "TASKS", "UNKNOWN", "Example", "PromptFormat", "ShotSampler", "TaskConfig", "classification_scores",
    "evaluation_settings", "few_shot_messages", "load_examples", "normalize_italian", "normalize_squad",
    "parse_label", "prompt_format", "squad_metrics", "squad_scores", "task_configs",
]
