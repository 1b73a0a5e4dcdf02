"""Several processes under one launcher (``torchrun``, ``accelerate launch``): which rank this is, and what only
the main process does.

Training runs on the launchers' own machinery (DDP, FSDP or DeepSpeed through transformers' ``Trainer``); this
module only keeps the ranks in step around it:

- the launchers describe the run in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), read here
  without importing torch, so a rank knows its place before the process group forms;
- :func:`on_main` / :func:`main_only` run a step that writes (the output lock, a card) on the global main process and tells the
  others whether it worked, so that a refusal on the main process stops every rank with the same answer;
- :func:`broadcast` and :func:`gather` are no-ops in a single process;
- :func:`quiet_replica` silences the libraries on the other ranks: only the main process prints the console;
- :func:`finish` leaves the process group when the command is done (the CLI calls it on every rank).

The process group is formed by transformers when the training arguments are built (``TrainingArguments``
sets up its device).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, ContextManager, Iterator

from cerbero_hf.errors import InputError


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return default


def world_size() -> int:
    """How many processes the launcher started (1 when none did)."""
    return _env_int("WORLD_SIZE", default=1)


def rank() -> int:
    """This process's global rank (0 when no launcher started it)."""
    return _env_int("RANK", default=0)


def launched() -> bool:
    """True when a launcher started more than one process for this run."""
    return world_size() > 1


def is_main() -> bool:
    """True on the global main process (rank 0), the one that writes files, prints and pushes."""
    return rank() == 0


def launcher() -> str:
    """How the run was started: ``accelerate launch``, ``torchrun``, ``deepspeed``, another ``launcher`` or ``none``.

    ``accelerate launch`` exports its settings as ``ACCELERATE_*`` variables before it calls torchrun's machinery,
    so it is checked first.
    """
    if not launched():
        return "none"
    if "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_DYNAMO_BACKEND" in os.environ:
        return "accelerate launch"
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    if "DEEPSPEED_ENVIRONMENT_NAME" in os.environ or "CROSS_RANK" in os.environ:
        return "deepspeed"
    return "launcher"


def die_with_launcher() -> None:
    """Under a launcher, end this rank when the launcher dies (``kill -9`` of ``torchrun``): torchrun starts its
    ranks in sessions of their own, so they would otherwise train on, orphaned, holding the output's lock. The
    next run of the same command resumes from the last checkpoint. Linux only (``PR_SET_PDEATHSIG``)."""
    if not launched() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher was gone before the call
        os._exit(128 + int(signal.SIGKILL))


def check_launch() -> None:
    """Refuse a launch that would silently train in fewer processes, or another way, than asked.

    ``accelerate launch`` with ``distributed_type: MULTI_CPU`` starts its processes only through ``mpirun``
    (``mpirun_hostfile``); without it one process runs, with ``MASTER_ADDR`` set for the others that never come.
    """
    if not launched() and "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ:
        raise InputError("accelerate launch was asked for several processes but started one (its MULTI_CPU type "
                         "starts processes only through mpirun): launch with configs/accelerate/cpu.yaml or torchrun")


def check_engine(asked: str | None, got: str) -> None:
    """Refuse a run whose engine is not the one asked for (``FSDP``, ``DEEPSPEED``): accelerate 1.x falls back to
    plain data parallel on the CPU without a word, which trains a different way than the config says."""
    if asked and launched() and got != asked:
        raise InputError(f"the launch asks for {asked} but accelerate set up {got}: accelerate runs {asked} only on "
                         "GPUs; on the CPU use configs/accelerate/cpu.yaml (data parallel, gloo)")


def asked_engine(fsdp: object = None, deepspeed: object = None) -> str | None:
    """The engine the launcher's config or the training arguments ask for: ``FSDP``, ``DEEPSPEED`` or None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or fsdp:
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" or deepspeed:
        return "DEEPSPEED"
    return None


def _dist():
    """``torch.distributed`` when a process group is up, else None."""
    if not launched():
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def finish() -> None:
    """Leave the process group, if this process formed one (every rank, once its command is done). A gloo or NCCL
    group left for the interpreter's exit to tear down can abort the rank with "terminate called without an
    active exception" after the work is done, and the launcher then reports the run as failed."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """The main process's ``value`` on every rank (a picklable object)."""
    dist = _dist()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in one process)."""
    dist = _dist()
    if dist is None:
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


class ReplicaStop(InputError):
    """Raised on a rank other than the main one when the main process refused the run: the main process prints
    the reason; this rank exits with the same code and prints nothing."""


def on_main(step: Callable[[], Any]) -> Any:
    """Run ``step()`` on the main process only and return its result there (None on the other ranks), once every
    rank knows it worked. When it fails, the main process raises its error as it is (an :class:`InputError` is one
    line) and the other ranks raise :class:`ReplicaStop`, so no rank goes on alone. In one process: ``step()``.
    """
    if not launched():
        return step()
    result, failure = None, None
    if is_main():
        try:
            result = step()
        except BaseException as err:  # noqa: BLE001 - told to the other ranks, then raised as it is
            failure = err
    answer = broadcast(None if failure is None else str(failure) or type(failure).__name__)
    if failure is not None:
        raise failure
    if answer is not None:
        raise ReplicaStop(f"the main process stopped: {answer}")
    return result


@contextlib.contextmanager
def main_only(open_step: Callable[[], ContextManager]) -> Iterator[Any]:
    """Enter ``open_step()`` (a context manager: the output lock) on the main process only, with :func:`on_main`;
    it is left when the block ends. In one process this is ``with open_step()``."""
    with contextlib.ExitStack() as stack:
        yield on_main(lambda: stack.enter_context(open_step()))


def quiet_replica() -> None:
    """On a rank other than the main one: no progress bars, library logs or warnings (the main one prints)."""
    if not launched() or is_main():
        return
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("transformers", "datasets", "trl", "accelerate", "peft", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TQDM_DISABLE"] = "1"
