"""What Lightning prints that a learner cannot act on, filtered out of its loggers; and the one line that says
which device trains when it is a GPU."""

from __future__ import annotations

import logging
import re

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities.rank_zero import rank_zero_info

# rank_zero_info(...) logs through "lightning.pytorch.utilities.rank_zero"; the CUDA line through the accelerator's
CHATTER = re.compile(
    r"^(GPU available: |TPU available: |HPU available: |💡 Tip: |LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES"
    r"|Trainer already configured with model summary callbacks"
    r"|`Trainer.fit` stopped: `max_epochs=\d+` reached)"  # the normal end: Keras says nothing either
)
LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")


class Chatter(logging.Filter):
    """Drops Lightning's accelerator-availability lines, its summary-callback notice, its product tips and its notice
    that fit reached max_epochs (it would land between the last epoch's header and its line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return CHATTER.match(str(record.msg)) is None


CHATTER_FILTER = Chatter()


def quiet_lightning_chatter() -> None:
    """Filter the chatter out of the loggers that print it (idempotent: one filter object)."""
    for name in LOGGERS:
        logging.getLogger(name).addFilter(CHATTER_FILTER)


def say_training_device(trainer: L.Trainer) -> None:
    """One line naming the GPU that trains, e.g. "Training on cuda:0 (NVIDIA H200)"; nothing on a CPU."""
    if isinstance(trainer.accelerator, CUDAAccelerator):
        device = trainer.strategy.root_device
        count = f", {trainer.num_devices} devices" if trainer.num_devices > 1 else ""
        rank_zero_info(f"Training on {device} ({torch.cuda.get_device_name(device)}){count}")
