"""The train stage's settings: TRL's ``SFTConfig`` plus the Cerbero fields, declared once (paper §4, Table 1).

:class:`TrainConfig` *is* an ``SFTConfig`` (so a ``SFTTrainer`` takes it as ``args``): every TRL and
``transformers.TrainingArguments`` field (``learning_rate``, ``max_length``, ``packing``, ``bf16``, ``optim``,
``push_to_hub``, ``hub_model_id``, ...) comes from TRL under its own name, and the paper's values are our
defaults for them. The Cerbero fields (base model, corpora, condition, language, LoRA, ...) are declared
here with :func:`cerbero_hf.config.setting`. The same class gives the recipe's ``train:`` keys
(:meth:`TrainConfig.from_recipe`), the ``cerbero-hf train`` flags (:func:`parser`, a ``HfArgumentParser``
as in TRL's ``trl/scripts/sft.py``) and the Python constructor.

On a machine without a GPU the device flags are set at construction: ``use_cpu``, ``bf16`` off,
activation checkpointing off, ``optim`` ``adamw_torch`` (``adamw_bnb_8bit`` on a GPU with bitsandbytes).
Importing this module imports TRL (seconds): only the train stage's ``run`` and CLI do, lazily.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib.util
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from transformers import HfArgumentParser
from transformers.trainer_utils import HubStrategy, SchedulerType
from trl import SFTConfig

from cerbero_hf import distributed
from cerbero_hf.config import Config, check, from_dict, setting
from cerbero_hf.errors import InputError
from cerbero_hf.stages.train.data import CONDITIONS, check_corpora


@dataclass
class TrainConfig(SFTConfig, Config):
    """TRL's ``SFTConfig`` with the paper's defaults and the Cerbero fields (recipe section ``train``).

    ``output_dir`` ``None`` means the stage's folder (recipe) or the OUTPUT argument (CLI). Hub tokens come
    from the environment or ``hf auth login``, never from this config.

    Examples:
        >>> from cerbero_hf import TrainConfig
        >>> config = TrainConfig(model="mistralai/Mistral-7B-v0.1", corpora=["out/filtered"], lora=True)
        >>> config.learning_rate, config.max_length, config.lr_scheduler_type.value  # the paper's Table 1
        (5e-06, 8192, 'cosine')
    """

    SECTION: ClassVar[str] = "train"

    # -- paper defaults for TRL / transformers fields (Table 1 and the paper's unstated values) --
    output_dir: str | None = setting(None, help="Where the model and checkpoints go (default: the stage's folder).")
    max_length: int | None = setting(8192, help="Sequence length (Table 1: 8192).", gt=0)
    learning_rate: float = setting(5e-6, help="Peak learning rate (Table 1: 5e-6).", ge=0)
    lr_scheduler_type: SchedulerType | str = setting("cosine", help="Learning-rate schedule (Table 1: cosine).")
    warmup_steps: float = setting(10, help="Warm-up steps (Table 1: 10; below 1: a share of the steps).", ge=0)
    num_train_epochs: float = setting(1.0, help="Epochs (Table 1: 1).", gt=0)
    per_device_train_batch_size: int = setting(4, help="Micro batch size per device (Table 1: 4).", ge=1)
    # None until __post_init__ decides (the training batch size; the GPU's bf16 support; bitsandbytes' optimizer):
    # after construction these three hold TRL's types, so the narrower base-class types are kept for readers.
    per_device_eval_batch_size: int | None = setting(  # type: ignore[assignment]
        None, help="Eval batch size (default: the training one).", ge=1)
    gradient_accumulation_steps: int = setting(4, help="Gradient accumulation steps (paper: 4).", ge=1)
    packing: bool = setting(True, help="Pack conversations into max_length blocks (paper: on).")
    activation_checkpointing: bool | None = setting(True, help="Activation checkpointing (paper: on; off on CPU).")
    bf16: bool | None = setting(  # type: ignore[assignment]
        None, help="bf16 mixed precision (default: on where the GPU supports it).")
    optim: str | None = setting(  # type: ignore[assignment]
        None, help="Optimizer (default: adamw_bnb_8bit on a GPU with bitsandbytes, else adamw_torch).")
    save_steps: float = setting(100, help="Save (and push) a checkpoint every N steps.", gt=0)
    save_total_limit: int | None = setting(3, help="Keep at most N checkpoints.", ge=1)
    report_to: None | str | list[str] = setting("none", help="Trackers: none, trackio, wandb, ...")
    hub_strategy: HubStrategy | str = setting(
        "checkpoint", help="What to push while training: checkpoint (also the last checkpoint, for resuming "
                           "elsewhere), every_save, end or all_checkpoints.")
    hub_private_repo: bool | None = setting(True, help="Create the Hub repo private.")
    disable_tqdm: bool | None = setting(True, help="Hide TRL's progress bar (the CLI draws its own).")

    # -- Cerbero fields --
    model: str = setting("mistralai/Mistral-7B-v0.1", help="Base model id or local path (paper: Mistral-7B).")
    corpora: list[str] = setting(
        default_factory=list, help="Corpora NAME=PATH@WEIGHT (a file, a Hub-layout folder or a Hub dataset id; "
                                   "a recipe may also give mappings with path, name, weight, config, split). "
                                   "Default in a recipe: the filter stage's outputs.")
    condition: str = setting("full", help="Which corpora to train on (paper §4).", choices=tuple(CONDITIONS))
    language: str = setting("it", help="Language pack code or YAML (chat tags, stop strings).")
    fauno_tags: bool = setting(False, help="Render replies with the Fauno tag [|AI|].")
    eval_fraction: float = setting(0.05, help="Share of rows held out and evaluated at the end.", ge=0, le=1)
    attn_implementation: str | None = setting(None, help="Attention implementation, e.g. sdpa or flash_attention_2.")
    lora: bool = setting(False, help="LoRA through PEFT instead of full fine-tuning (the paper).")
    lora_r: int = setting(16, help="LoRA rank.", ge=1)
    lora_alpha: int = setting(32, help="LoRA alpha.", ge=1)
    lora_dropout: float = setting(0.05, help="LoRA dropout.", ge=0, le=1)
    lora_target_modules: str = setting("all-linear", help="LoRA target modules.")
    load_in_4bit: bool = setting(False, help="QLoRA: LoRA on a 4-bit base (needs lora, a GPU and bitsandbytes).")
    merge_lora: bool = setting(False, help="With LoRA, also write OUTPUT-merged (merge_and_unload).")
    resume: bool = setting(True, help="Continue from the last checkpoint-* in output_dir.")
    overwrite: bool = setting(False, help="Write into an output_dir holding files cerbero-hf did not write "
                                          "(they are kept). Without it such a folder is refused.")
    license: str = setting("apache-2.0", help="The model card's license.")
    model_name: str | None = setting(None, help="The model card's title (default: the repo or folder name).")

    def __post_init__(self) -> None:
        check(self)  # ranges and choices of our settings (and TRL's declared choices), naming train.<key>
        _check_enums(self)
        for spec in self.corpora:
            _corpus(spec)
        gpu = not self.use_cpu and _has_cuda()
        self.use_cpu = not gpu
        if self.bf16 is None:
            self.bf16 = gpu and not self.fp16 and _bf16_supported()
        self.bf16 = bool(self.bf16) and gpu
        self.activation_checkpointing = bool(self.activation_checkpointing) and gpu
        if self.optim is None:
            self.optim = "adamw_bnb_8bit" if gpu and importlib.util.find_spec("bitsandbytes") else "adamw_torch"
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.corpora and distributed.launched():  # before transformers forms the process group below
            check_corpora(self.corpora, self.condition)
        output_dir = self.output_dir
        try:
            super().__post_init__()  # sets up the device: under a launcher, joins the process group
        except (ValueError, TypeError) as err:
            raise InputError(f"bad train setting: {str(err).splitlines()[0]}", column="train") from None
        self.output_dir = output_dir if output_dir is None else self.output_dir  # None: decided by the caller

    @classmethod
    def from_recipe(cls, section: dict | None, *, file: str | None = None, defaults: dict | None = None,
                    enabled: bool = True) -> TrainConfig:
        """The recipe's ``train:`` mapping -> a validated config; unknown keys, types, ranges and choices are
        one-line :class:`InputError` s naming ``train.<key>``. ``defaults`` fill ``language`` and ``seed``."""
        data = dict(section or {})
        corpora = data.pop("corpora", None)
        config = from_dict(cls, data, file=file, defaults=defaults)
        if corpora is None:
            return config
        if isinstance(corpora, (str, dict)):
            corpora = [corpora]
        if not isinstance(corpora, list):
            raise InputError(f"train.corpora must be a list, got {corpora!r}", file=file, column="train.corpora")
        try:
            return dataclasses.replace(config, corpora=corpora)
        except InputError as err:
            raise InputError(err.message, file=file, column=err.column) from None

    def output_path(self) -> Path:
        """``output_dir`` as a path; an :class:`InputError` while it is still unset (None)."""
        if not self.output_dir:
            raise InputError("an output folder is needed")
        return Path(self.output_dir)

    def recipe_table(self) -> dict[str, Any]:
        """The hyper-parameters shown in the model card (no paths, no secrets)."""
        keys = ["max_length", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                "max_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "packing",
                "activation_checkpointing", "assistant_only_loss", "seed"]
        table = {k: _plain(getattr(self, k)) for k in keys if not (k == "max_steps" and self.max_steps < 0)}
        table["fine-tuning"] = ("QLoRA" if self.load_in_4bit else "LoRA") + f" r={self.lora_r}" if self.lora else "full"
        return table


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _corpus(spec):
    from cerbero_hf.stages.train.data import Corpus

    if not isinstance(spec, (str, dict)):
        raise InputError(f"train.corpora items must be NAME=PATH@WEIGHT strings or mappings, got {spec!r}",
                         column="train.corpora")
    try:
        return Corpus.parse(spec)
    except InputError as err:
        raise InputError(err.message, file=err.file, column="train.corpora") from None


def _check_enums(cfg: TrainConfig) -> None:
    """TRL fields typed with an enum (``lr_scheduler_type``, ``optim``, ``hub_strategy``, ...): a value
    outside it is an error naming ``train.<key>``, not a ``ValueError`` from deep inside transformers."""
    hints = _hints()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not isinstance(value, str):
            continue
        for tp in typing.get_args(hints[f.name]) or (hints[f.name],):
            if typing.get_origin(tp) is None and isinstance(tp, type) and issubclass(tp, enum.Enum):
                allowed = [e.value for e in tp]
                if value not in allowed:
                    raise InputError(f"train.{f.name} must be one of {', '.join(map(str, allowed))}, got {value!r}",
                                     column=f"train.{f.name}")


_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    if not _HINTS:
        # the parent's hints: our overrides of optim / lr_scheduler_type keep the enum TRL declares
        _HINTS.update(typing.get_type_hints(SFTConfig))
        _HINTS.update({k: v for k, v in typing.get_type_hints(TrainConfig).items() if k not in _HINTS})
    return _HINTS


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def is_ours(f: dataclasses.Field) -> bool:
    """Declared (or given its default) here with :func:`cerbero_hf.config.setting`, not inherited from TRL."""
    return "cli" in f.metadata


class _Parser(HfArgumentParser):
    """``HfArgumentParser`` whose errors are one-line :class:`InputError` s and whose help lists our fields
    first; the metadata keys of :func:`setting` that argparse does not know (ge, le, ...) stay out of it."""

    ARGPARSE_KEYS = ("help", "choices", "aliases", "metavar")

    def error(self, message: str):
        raise InputError(message)

    def _add_dataclass_arguments(self, dtype) -> None:
        hints = typing.get_type_hints(dtype)
        our_group = self.add_argument_group("cerbero-hf settings and the paper's defaults (recipe section train:)")
        groups = [(our_group, True), (self.add_argument_group("TRL SFTConfig / transformers TrainingArguments"), False)]
        for group, ours in groups:
            for f in dataclasses.fields(dtype):
                if not f.init or is_ours(f) != ours:
                    continue
                meta = {k: v for k, v in f.metadata.items() if k in self.ARGPARSE_KEYS and v is not None}
                f = copy.copy(f)  # the class's own Field objects stay untouched
                f.metadata, f.type = types.MappingProxyType(meta), hints[f.name]
                # transformers passes argument groups here too, though it annotates an ArgumentParser
                self._parse_dataclass_field(group, f)  # type: ignore[arg-type]


def parser(prog: str = "cerbero-hf train", **kwargs) -> HfArgumentParser:
    """The ``HfArgumentParser`` over :class:`TrainConfig`: one ``--flag`` (and ``--flag_name``) per field."""
    return _Parser(TrainConfig, prog=prog, **kwargs)  # type: ignore[arg-type]  # transformers: a NewType of Any
