"""Supervised fine-tuning with the Cerbero recipe on TRL (paper §4).

Used in this order by :func:`train` (the train stage's ``run`` and ``cerbero-hf train``):

1. :func:`~cerbero_hf.stages.train.data.build_training_set`: corpora -> one shuffled ``messages`` dataset
   (condition presets ``fauno`` / ``generated`` / ``full``, weights, recorded seed).
2. :class:`~cerbero_hf.stages.train.config.TrainConfig`: TRL's ``SFTConfig`` with the paper's defaults,
   passed to ``SFTTrainer`` as it is.
3. :func:`train`: the Cerbero chat template on the tokenizer (``{% generation %}`` markers, EOS inside the
   block in assistant-only mode), ``SFTTrainer`` (full or LoRA/QLoRA), checkpoints pushed to the Hub
   while training, resume from the last checkpoint, the model card, and a merged model for LoRA.

Input columns: ``messages``. Output: a model folder (``save_pretrained`` layout, README card,
``cerbero_train.json``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from cerbero_hf import distributed
from cerbero_hf.errors import InputError
from cerbero_hf.outputs import writes_output
from cerbero_hf.stages.train.config import TrainConfig  # noqa: F401  (public API)
from cerbero_hf.stages.train.data import CONDITIONS, Corpus, build_training_set, check_corpora  # noqa: F401
from cerbero_hf.stages.train.model_card import write_card, write_saved
from cerbero_hf.stages.train.ranks import PREPARED, batch_note, check_resume, how_trained, training_data
from cerbero_hf.stages.train.result import TrainResult

MANIFEST = "cerbero_train.json"


def templates(cfg: TrainConfig, eos_token: str) -> tuple[str, str, list[str]]:
    """``(training template, inference template, stop strings)`` for a run (Fauno tags, loss mode)."""
    from cerbero_hf.chat_template import chat_template, stop_strings
    from cerbero_hf.languages import load_language

    pack = load_language(cfg.language)
    tag = pack.fauno_assistant_tag if cfg.fauno_tags else None
    training = chat_template(pack, training=True, eos_in_generation=cfg.assistant_only_loss, assistant_tag=tag)
    stops = stop_strings(pack) + ([eos_token] if cfg.assistant_only_loss else [])
    return training, chat_template(pack, assistant_tag=tag), stops


def _load_model(cfg: TrainConfig, bf16: bool, quantize: bool):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)


def _trainer_class():
    """``SFTTrainer`` whose model cards are ours: TRL's at push time, and PEFT's in every saved folder (it names the
    base by its local path, as ``adapter_config.json`` does), rewritten right after the save, before any push."""
    from trl import SFTTrainer

    class CerberoSFTTrainer(SFTTrainer):
        card_writer = None
        saved_writer = None
        rank_tokens = 0  # this rank's own tokens and steps
        rank_steps = 0

        def create_model_card(self, *args, **kwargs):
            if self.card_writer is not None and self.is_world_process_zero():
                self.card_writer(self.args.output_dir)

        def _save(self, output_dir=None, state_dict=None):
            super()._save(output_dir, state_dict=state_dict)
            if self.saved_writer is not None and self.args.should_save:
                self.saved_writer(output_dir or self.args.output_dir)

        def training_step(self, model, inputs, *args, **kwargs):
            # this rank's own tokens (TRL's num_tokens is the sum over ranks): the report shows every rank trained
            if "attention_mask" in inputs:
                self.rank_tokens += int(inputs["attention_mask"].sum())
            elif "position_ids" in inputs:
                self.rank_tokens += int(inputs["position_ids"].size(1))
            self.rank_steps += 1
            return super().training_step(model, inputs, *args, **kwargs)
    return CerberoSFTTrainer


def merged_folder(cfg: TrainConfig) -> Path:
    """Where a merged LoRA model goes: ``OUTPUT-merged``."""
    return Path(str(cfg.output_path()) + "-merged")


def _merge_lora(cfg: TrainConfig, tok, report: dict, stops: list[str]) -> Path:
    """Reload the base, apply the saved adapter and ``merge_and_unload`` into ``OUTPUT-merged`` (pushed to
    ``<hub_model_id>-merged`` with ``push_to_hub``)."""
    from peft import PeftModel

    base = _load_model(cfg, bf16=False, quantize=False)
    merged = PeftModel.from_pretrained(base, str(cfg.output_path())).merge_and_unload()
    out = merged_folder(cfg)
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    write_card(cfg, report, stops, out, merged=True)
    if cfg.push_to_hub and cfg.hub_model_id:  # check_inputs: pushing needs a repo id
        from huggingface_hub import HfApi

        api = HfApi()
        repo = api.create_repo(cfg.hub_model_id + "-merged", private=cfg.hub_private_repo, exist_ok=True)
        api.upload_folder(repo_id=repo.repo_id, folder_path=str(out), commit_message="Merged LoRA model")
    return out


def check_inputs(cfg: TrainConfig) -> None:
    """Fail fast, before any heavy work, on a missing output folder, corpus or repo id, or a bad condition."""
    cfg.output_path()  # an output folder is needed
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise InputError("pushing to the Hub needs a repo id (--hub-model-id USER/NAME)")
    if cfg.load_in_4bit and not (cfg.lora and not cfg.use_cpu and importlib.util.find_spec("bitsandbytes")):
        raise InputError("load_in_4bit (QLoRA) needs --lora, a GPU and the bitsandbytes package")
    check_corpora(cfg.corpora, cfg.condition)


def event_callback(on_event):
    """A transformers ``TrainerCallback`` reporting training to ``on_event(event, stats)`` (the recipe's console).

    Events: ``train_begin`` and ``step`` (``step``, ``max_steps``); ``log`` for every trainer log with a loss:
    ``step``, ``max_steps``, ``loss`` / ``eval_loss``, ``learning_rate``, ``tokens_per_second`` (from TRL's
    ``num_tokens`` since the previous log). It replaces transformers' own progress output (the tqdm bar and
    the printed log dicts): :func:`train` removes those callbacks when it is given.
    """
    from transformers import TrainerCallback

    class Events(TrainerCallback):
        replaces_progress = True

        def __init__(self):
            self.last = (time.perf_counter(), 0.0)

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.perf_counter(), 0.0)
            on_event("train_begin", {"step": state.global_step, "max_steps": state.max_steps})

        def on_step_end(self, args, state, control, **kwargs):
            on_event("step", {"step": state.global_step, "max_steps": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return
            now, tokens = time.perf_counter(), float(logs.get("num_tokens") or 0.0)
            rate = (tokens - self.last[1]) / (now - self.last[0]) if tokens and now > self.last[0] else None
            if tokens:
                self.last = (now, tokens)
            on_event("log", {"step": state.global_step, "max_steps": state.max_steps, "loss": logs.get("loss"),
                             "eval_loss": logs.get("eval_loss"), "learning_rate": logs.get("learning_rate"),
                             "tokens_per_second": rate})

    return Events()


@writes_output(lambda cfg, *_, **__: cfg.corpora, output=lambda cfg, *_, **__: cfg.output_dir,
               overwrite=lambda cfg, *_, **__: cfg.overwrite, same_settings=False)  # resumes from checkpoints
def train(cfg: TrainConfig, callbacks: list | tuple = (), on_note: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.corpora`` with TRL's ``SFTTrainer`` into ``cfg.output_dir``.

    Resumes from the last ``checkpoint-*`` in ``cfg.output_dir`` when ``cfg.resume``; pushes checkpoints,
    the tokenizer with its template and the final model when ``cfg.push_to_hub``. ``callbacks`` are
    transformers ``TrainerCallback`` objects (the CLI passes its progress bar). ``on_note(line)`` receives the
    one-line notes of the start (a global batch other than the paper's); default: a warning on the
    ``cerbero_hf`` logger.

    Under ``torchrun`` or ``accelerate launch`` every rank calls this and trains; only the main process locks the
    output, writes the card, ``cerbero_train.json`` and the merged model, and pushes (see
    :mod:`cerbero_hf.distributed`). Every rank returns the same result.

    Examples:
        >>> from cerbero_hf import TrainConfig, train
        >>> config = TrainConfig(model="mistralai/Mistral-7B-v0.1", corpora=["out/filtered"], output_dir="out/model")
        >>> result = train(config)  # doctest: +SKIP
    """
    from transformers.trainer_utils import get_last_checkpoint

    check_inputs(cfg)
    distributed.check_launch()
    distributed.die_with_launcher()
    note = batch_note(cfg)
    if note and distributed.is_main():
        (on_note or logging.getLogger("cerbero_hf").warning)(note)
    out = cfg.output_path()
    last = get_last_checkpoint(str(out)) if cfg.resume and out.is_dir() else None
    check_resume(last)
    try:
        return _train(cfg, callbacks, last)
    finally:
        if distributed.launched() and distributed.is_main():
            import shutil

            shutil.rmtree(out / PREPARED, ignore_errors=True)


def _train(cfg: TrainConfig, callbacks, last: str | None) -> TrainResult:
    from transformers import AutoTokenizer

    out = cfg.output_path()
    train_ds, eval_ds, report = training_data(cfg)

    tok = AutoTokenizer.from_pretrained(cfg.model)
    training_template, inference_template, stops = templates(cfg, tok.eos_token)
    tok.chat_template = training_template
    model = _load_model(cfg, bool(cfg.bf16), quantize=cfg.load_in_4bit)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    trainer = _trainer_class()(
        model=model, args=cfg, train_dataset=train_ds.select_columns(["messages"]),
        eval_dataset=eval_ds.select_columns(["messages"]) if eval_ds is not None else None,
        processing_class=tok, peft_config=peft_config, callbacks=list(callbacks))
    setup = how_trained(cfg, trainer)
    distributed.check_engine(distributed.asked_engine(cfg.fsdp, cfg.deepspeed), setup["distributed_type"])
    if distributed.launched():  # the same tokenised cache files on every rank: the main process prepared them once
        caches = distributed.gather(sorted(Path(f["filename"]).name for f in trainer.train_dataset.cache_files))
        setup["data_prepared"] = "once, by the main process" if all(c == caches[0] for c in caches) else "on every rank"
    report["distributed"] = setup
    trainer.card_writer = lambda folder: write_card(cfg, report, stops, folder)
    trainer.saved_writer = lambda folder: write_saved(cfg, report, stops, folder)
    if any(getattr(c, "replaces_progress", False) for c in callbacks):  # event_callback: no tqdm bar, no dicts
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)

    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    eval_loss = trainer.evaluate()["eval_loss"] if eval_ds is not None else None
    setup["ranks"] = [{"rank": r, "steps": steps, "tokens": tokens} for r, (steps, tokens) in
                      enumerate(distributed.gather((trainer.rank_steps, trainer.rank_tokens)))]

    tok.chat_template = inference_template  # the saved copy renders prompts, it does not train
    trainer.save_model(str(out))  # every rank: FSDP and ZeRO-3 gather the weights; transformers writes on rank 0
    res = TrainResult(rows=len(train_ds), rejected=sum(c["rows_rejected"] for c in report["corpora"]),
                      steps=trainer.state.global_step,
                      tokens=int(getattr(trainer, "_total_train_tokens", 0)), train_loss=result.training_loss,
                      eval_loss=eval_loss, seconds=seconds, resumed_from=last, model=str(out),
                      merged=str(merged_folder(cfg)) if cfg.lora and cfg.merge_lora else None)
    distributed.on_main(lambda: _write_report(cfg, report, stops, res, out))  # before the final push carries it
    if cfg.push_to_hub:  # every rank saves (FSDP, ZeRO-3 gather), the main process pushes
        trainer.push_to_hub(commit_message="End of training")
        res.hub = trainer.hub_model_id
    if res.merged:
        distributed.on_main(lambda: _merge_lora(cfg, tok, report, stops))
    return res


def _write_report(cfg: TrainConfig, report: dict, stops: list[str], res: TrainResult, out: Path) -> None:
    """The main process's record of the run: the model card and ``cerbero_train.json``."""
    write_card(cfg, report, stops, out)
    (out / MANIFEST).write_text(json.dumps({
        "config": cfg.to_dict(), "data": report, "stop_strings": stops, "result": res.to_dict()},
        indent=2, ensure_ascii=False, default=str), encoding="utf-8")
