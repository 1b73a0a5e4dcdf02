"""``cerbero-hf`` as a launcher's script, with two test knobs (tests/stages/train/test_distributed.py):

- ``CERBERO_TEST_STEP_SLEEP=S``: every training step sleeps S seconds first (a run slow enough to be killed
  between two checkpoints; the numbers trained do not change);
- ``CERBERO_TEST_FAIL_RANK=R``: rank R fails while loading the model (a failure on one rank only).

    torchrun --nproc_per_node 2 tests/support/train_launch.py train CORPUS ... OUTPUT ...
"""

import os
import sys
import time

import cerbero_hf.stages.train.trainer as trainer_module
from cerbero_hf.cli import main

SLEEP = float(os.environ.get("CERBERO_TEST_STEP_SLEEP", "0"))
FAIL_RANK = os.environ.get("CERBERO_TEST_FAIL_RANK")

if SLEEP:
    _trainer_class = trainer_module._trainer_class

    def _slow_trainer_class():
        class Slow(_trainer_class()):
            def training_step(self, *args, **kwargs):
                time.sleep(SLEEP)
                return super().training_step(*args, **kwargs)

        return Slow

    trainer_module._trainer_class = _slow_trainer_class

if FAIL_RANK is not None and os.environ.get("RANK") == FAIL_RANK:
    def _broken_load(*args, **kwargs):
        raise RuntimeError(f"simulated failure on rank {FAIL_RANK}")

    trainer_module._load_model = _broken_load

if __name__ == "__main__":
    main(sys.argv[1:])
