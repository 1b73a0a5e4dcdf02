"""Supervised fine-tuning with the Cerbero recipe on TRL (METHOD.md §6, D25–D28).

Used in this order by :func:`train` and by ``cerbero-hf train``:

1. :func:`~cerbero_hf.training_data.build_training_set`: corpora -> one shuffled ``messages`` dataset
   (condition presets ``fauno`` / ``generated`` / ``full``, weights, recorded seed; D27, D28).
2. :class:`TrainConfig`: the typed recipe (Table 1 defaults, D25) -> ``SFTConfig`` via :func:`sft_config`,
   with the CPU flags set automatically (STACK.md pitfall 6).
3. :func:`train`: the Cerbero chat template on the tokenizer (``{% generation %}`` markers, EOS inside the
   block in assistant-only mode, D26), ``SFTTrainer`` (full or LoRA/QLoRA), checkpoints pushed to the Hub
   while training, resume from the last checkpoint, the model card, and a merged model for LoRA.

Input columns: ``messages``. Output: a model folder (``save_pretrained`` layout, README card,
``cerbero_train.json``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cerbero_hf.errors import InputError
from cerbero_hf.training_data import CONDITIONS, Corpus, build_training_set  # noqa: F401  (public API)

MANIFEST = "cerbero_train.json"


@dataclass
class TrainConfig:
    """The fine-tuning recipe (METHOD.md §6.2 Table 1 and D25–D28). Loadable from YAML, overridable from the CLI.

    Model and data:
        model: base model id or local path (the paper: ``mistralai/Mistral-7B-v0.1``).
        corpora: corpus specs ``NAME=PATH@WEIGHT`` or dicts (:class:`Corpus`).
        condition: ``fauno`` | ``generated`` | ``full`` (§6.1). seed: shuffle/sampling/training seed (D28).
        language: language pack code or YAML. fauno_tags: render replies with the Fauno tag ``[|AI|]`` (D27).
        eval_fraction: share of rows held out and evaluated at the end (D25: 5 %).
    Recipe (Table 1; D25 for the unstated values):
        max_length, learning_rate, lr_scheduler_type, warmup_steps, num_train_epochs, max_steps,
        per_device_train_batch_size, gradient_accumulation_steps, packing, activation_checkpointing,
        weight_decay, bf16 (None: on when a GPU is there), optim (None: ``adamw_bnb_8bit`` with
        bitsandbytes on a GPU, else ``adamw_torch``), attn_implementation, logging_steps, save_steps,
        save_total_limit, deepspeed (a ZeRO config JSON, e.g. ``configs/accelerate/ds_zero1.json``).
    Loss (D26):
        assistant_only_loss: loss on assistant replies only (EOS inside the generation block) instead of
            the paper's full conversations.
    LoRA / QLoRA (PEFT):
        lora, lora_r, lora_alpha, lora_dropout, lora_target_modules, load_in_4bit (QLoRA; needs
        bitsandbytes and a GPU), merge_lora (also write ``OUTPUT-merged`` with ``merge_and_unload``).
    Hub:
        push_to_hub, hub_model_id, hub_strategy (``checkpoint``: also push the last checkpoint for
        resuming elsewhere; ``every_save``; ``end``), hub_private_repo. Tokens come from the environment
        or ``hf auth login``, never from this config.
    Run:
        output_dir, resume (continue from the last ``checkpoint-*`` in output_dir), report_to (``none``,
        ``trackio``, ``wandb``, ...), license, model_name (the card's title; default: the repo name).
    """

    model: str = "mistralai/Mistral-7B-v0.1"
    corpora: list = field(default_factory=list)
    condition: str = "full"
    seed: int = 42
    language: str = "it"
    fauno_tags: bool = False
    eval_fraction: float = 0.05
    max_length: int = 8192
    learning_rate: float = 5e-6
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 10
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    packing: bool = True
    activation_checkpointing: bool = True
    weight_decay: float = 0.0
    bf16: bool | None = None
    optim: str | None = None
    attn_implementation: str | None = None
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int | None = 3
    deepspeed: str | None = None
    assistant_only_loss: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    load_in_4bit: bool = False
    merge_lora: bool = False
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_strategy: str = "checkpoint"
    hub_private_repo: bool = True
    output_dir: str = ""
    resume: bool = True
    report_to: str = "none"
    license: str = "apache-2.0"
    model_name: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """Read a recipe YAML (top-level keys or a ``train:`` section); ``overrides`` win over the file."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"cannot read recipe: {str(err).splitlines()[0]}", file=str(path)) from None
        if not isinstance(data, dict):
            raise InputError("a recipe must be a mapping", file=str(path))
        data = data.get("train", data)
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}}, file=str(path))

    @classmethod
    def from_dict(cls, data: dict, file: str | None = None) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown train setting(s): {', '.join(unknown)}", file=file, column=unknown[0])
        return cls(**data)

    def recipe_table(self) -> dict[str, Any]:
        """The hyper-parameters shown in the model card (no paths, no secrets)."""
        keys = ["max_length", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                "max_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "packing",
                "activation_checkpointing", "assistant_only_loss", "seed"]
        table = {k: getattr(self, k) for k in keys if not (k == "max_steps" and self.max_steps < 0)}
        table["fine-tuning"] = ("QLoRA" if self.load_in_4bit else "LoRA") + f" r={self.lora_r}" if self.lora else "full"
        return table


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sft_config(cfg: TrainConfig, **extra):
    """Build TRL's ``SFTConfig`` from the recipe; on a machine without a GPU use ``use_cpu=True, bf16=False,
    activation_checkpointing=False`` (STACK.md §3.5)."""
    from trl import SFTConfig

    gpu = _has_cuda()
    if cfg.bf16 is None:
        import torch

        bf16 = gpu and torch.cuda.is_bf16_supported()
    else:
        bf16 = cfg.bf16 and gpu
    optim = cfg.optim or ("adamw_bnb_8bit" if gpu and importlib.util.find_spec("bitsandbytes") else "adamw_torch")
    kwargs = dict(
        output_dir=cfg.output_dir, max_length=cfg.max_length, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_steps, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, packing=cfg.packing,
        activation_checkpointing=cfg.activation_checkpointing and gpu, weight_decay=cfg.weight_decay, bf16=bf16,
        use_cpu=not gpu, optim=optim, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed,
        assistant_only_loss=cfg.assistant_only_loss, report_to=cfg.report_to, deepspeed=cfg.deepspeed,
        push_to_hub=cfg.push_to_hub, hub_model_id=cfg.hub_model_id, hub_strategy=cfg.hub_strategy,
        hub_private_repo=cfg.hub_private_repo, disable_tqdm=True,
    )
    kwargs.update(extra)
    return SFTConfig(**kwargs)


@dataclass
class TrainResult:
    """What a run produced: figures for the summary and the paths written."""

    output_dir: str
    rows: int
    steps: int
    tokens: int
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    resumed_from: str | None = None
    hub_repo: str | None = None
    merged_dir: str | None = None


def templates(cfg: TrainConfig, eos_token: str) -> tuple[str, str, list[str]]:
    """``(training template, inference template, stop strings)`` for a run (METHOD.md §6.4, D26, D27)."""
    from cerbero_hf.chat_template import chat_template, stop_strings
    from cerbero_hf.languages import load_language

    pack = load_language(cfg.language)
    tag = pack.fauno_assistant_tag if cfg.fauno_tags else None
    training = chat_template(pack, training=True, eos_in_generation=cfg.assistant_only_loss, assistant_tag=tag)
    stops = stop_strings(pack) + ([eos_token] if cfg.assistant_only_loss else [])
    return training, chat_template(pack, assistant_tag=tag), stops


def _load_model(cfg: TrainConfig, bf16: bool):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.load_in_4bit:
        if not (cfg.lora and _has_cuda() and importlib.util.find_spec("bitsandbytes")):
            raise InputError("load_in_4bit (QLoRA) needs --lora, a GPU and the bitsandbytes package")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)


def _trainer_class():
    """``SFTTrainer`` whose checkpoint-time model card is ours (TRL writes its own at every save)."""
    from trl import SFTTrainer

    class CerberoSFTTrainer(SFTTrainer):
        card_writer = None

        def create_model_card(self, *args, **kwargs):
            if self.card_writer is not None and self.is_world_process_zero():
                self.card_writer(self.args.output_dir)

    return CerberoSFTTrainer


def write_card(cfg: TrainConfig, report: dict, stops: list[str], folder: str | Path, merged: bool = False) -> Path:
    """Render and save the model card (README.md) for a run into ``folder``."""
    from cerbero_hf.io import is_hub_id
    from cerbero_hf.languages import load_language
    from cerbero_hf.model_card import build_model_card

    pack = load_language(cfg.language)
    name = cfg.model_name or (cfg.hub_model_id or Path(cfg.output_dir).name).split("/")[-1]
    repo = cfg.hub_model_id + ("-merged" if merged else "") if cfg.hub_model_id else name
    corpora = [{"name": c["name"] if c["hub_id"] else Path(c["path"]).name, "hub_id": c["hub_id"],
                "weight": c["weight"], "rows": c["rows_used"]} for c in report["corpora"]]
    note = "LoRA adapter merged into the base weights" if merged else ("LoRA adapter" if cfg.lora else "")
    base = cfg.model if is_hub_id(cfg.model) else Path(cfg.model).name  # no local paths in a public card
    card = build_model_card(
        model_name=name, base_model=base, corpora=corpora, condition=cfg.condition, seed=cfg.seed,
        recipe=cfg.recipe_table(), assistant_only_loss=cfg.assistant_only_loss, stop_strings=stops,
        user_tag=pack.user_tag, assistant_tag=pack.fauno_assistant_tag if cfg.fauno_tags else pack.assistant_tag,
        repo_id=repo, language=pack.code, language_name=pack.name, license=cfg.license, fauno_tags=cfg.fauno_tags,
        condition_note=note, example_prompt=pack.extra.get("example_prompt", "..."),
        tags=["lora"] if cfg.lora else None)
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


def _split(ds, fraction: float, seed: int):
    n_eval = int(round(len(ds) * fraction))
    if n_eval == 0 or n_eval >= len(ds):
        return ds, None
    parts = ds.train_test_split(test_size=n_eval, shuffle=False, seed=seed)
    return parts["train"], parts["test"]


def _merge_lora(cfg: TrainConfig, tok, report: dict, stops: list[str]) -> Path:
    """Reload the base, apply the saved adapter and ``merge_and_unload`` into ``OUTPUT-merged``."""
    from peft import PeftModel

    base = _load_model(dataclasses.replace(cfg, load_in_4bit=False), bf16=False)
    merged = PeftModel.from_pretrained(base, cfg.output_dir).merge_and_unload()
    out = Path(str(Path(cfg.output_dir)) + "-merged")
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    write_card(cfg, report, stops, out, merged=True)
    return out


def check_inputs(cfg: TrainConfig) -> None:
    """Fail fast, before any heavy import, on a bad condition, a missing corpus or a missing repo id."""
    from cerbero_hf.training_data import select_corpora

    if not cfg.output_dir:
        raise InputError("an output folder is needed")
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise InputError("pushing to the Hub needs a repo id (--push-to-hub USER/NAME)")
    for c in select_corpora([Corpus.parse(c) for c in cfg.corpora], cfg.condition):
        if c.hub_id is None and not Path(c.path).exists():
            raise InputError("no such file or folder", file=c.path)


def train(cfg: TrainConfig, callbacks: list | tuple = ()) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.corpora`` with TRL's ``SFTTrainer`` (METHOD.md §6).

    Resumes from the last ``checkpoint-*`` in ``cfg.output_dir`` when ``cfg.resume``; pushes checkpoints,
    the tokenizer with its template and the final model when ``cfg.push_to_hub``. ``callbacks`` are
    transformers ``TrainerCallback`` objects (the CLI passes its progress bar).
    """
    from transformers.trainer_utils import get_last_checkpoint

    check_inputs(cfg)
    ds, report = build_training_set(cfg.corpora, condition=cfg.condition, seed=cfg.seed, language=cfg.language)
    train_ds, eval_ds = _split(ds, cfg.eval_fraction, cfg.seed)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.model)
    training_template, inference_template, stops = templates(cfg, tok.eos_token)
    tok.chat_template = training_template
    args = sft_config(cfg)
    model = _load_model(cfg, args.bf16)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=train_ds.select_columns(["messages"]),
        eval_dataset=eval_ds.select_columns(["messages"]) if eval_ds is not None else None,
        processing_class=tok, peft_config=peft_config, callbacks=list(callbacks))
    trainer.card_writer = lambda folder: write_card(cfg, report, stops, folder)

    out = Path(cfg.output_dir)
    last = get_last_checkpoint(str(out)) if cfg.resume and out.is_dir() else None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    eval_loss = trainer.evaluate()["eval_loss"] if eval_ds is not None else None

    tok.chat_template = inference_template  # the saved copy renders prompts, it does not train
    trainer.save_model(str(out))
    write_card(cfg, report, stops, out)
    res = TrainResult(output_dir=str(out), rows=len(train_ds), steps=trainer.state.global_step,
                      tokens=int(getattr(trainer, "_total_train_tokens", 0)),
                      train_loss=result.training_loss, eval_loss=eval_loss, seconds=seconds, resumed_from=last)
    (out / MANIFEST).write_text(json.dumps({
        "config": dataclasses.asdict(cfg), "data": report, "stop_strings": stops,
        "result": dataclasses.asdict(res)}, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    if cfg.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
        res.hub_repo = trainer.hub_model_id
    if cfg.lora and cfg.merge_lora:
        merged = _merge_lora(cfg, tok, report, stops)
        res.merged_dir = str(merged)
        if cfg.push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi()
            repo = api.create_repo(cfg.hub_model_id + "-merged", private=cfg.hub_private_repo, exist_ok=True)
            api.upload_folder(repo_id=repo.repo_id, folder_path=str(merged), commit_message="Merged LoRA model")
    return res
