"""The reference a checkpoint's exported or served predictions are compared with."""

from __future__ import annotations

from pathlib import Path

import torch

from fashion_lab import MLPClassifier
from fashion_lab.checkpoints import training_scaling


def checkpoint_probs(ckpt: Path, images: torch.Tensor) -> torch.Tensor:
    """What the checkpoint's model gives for uint8 images scaled as its training data were."""
    scaling = training_scaling(torch.load(ckpt, weights_only=True))
    model = MLPClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    with torch.no_grad():
        return model((images.float() / 255 - scaling["mean"]) / scaling["std"]).softmax(dim=1)
