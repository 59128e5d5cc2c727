"""The tutorial's slip, caught: a model asked about inputs far outside the range it was trained on (0..255 images
for a model trained on x / 255) says so once, naming what it saw and the fix.

>>> far_outside(torch.tensor([0.0, 255.0]), torch.tensor(0.0), torch.tensor(1.0))
'inputs reach 255 (min 0), but the training data were in [0, 1]: ... Fix: scale them like the training data (x / 255).'
"""

from __future__ import annotations

import torch
from torch import Tensor

# How far past the training range, in training spans, counts as "far": [0, 1] data warn above 3, never on pictures
# or test images scaled as in training (they lie inside the range), always on raw pixels (255).
TOLERANCE = 2.0


class InputScaleWarning(UserWarning):
    """Inputs far outside the range of the training data: predictions on them are not to be trusted."""


def far_outside(x: Tensor, low: Tensor, high: Tensor) -> str | None:
    """The warning for a batch `x` far outside the training range [low, high], or None (also when it is unknown:
    NaN, a checkpoint from before the range was kept). One host sync: call it outside training only."""
    seen_low, seen_high = torch.aminmax(x.detach().float())
    span = high - low
    if not bool((seen_high > high + TOLERANCE * span) | (seen_low < low - TOLERANCE * span)):
        return None
    seen_low, seen_high, low, high = (float(v) for v in (seen_low, seen_high, low, high))
    # raw 8-bit pixels are the usual cause (the tutorial's evaluate(x_test)); normalised training data also subtract
    fix = "x / 255" if low >= 0 else "x / 255, then the training data's mean and std (the checkpoint holds them)"
    return (
        f"inputs reach {seen_high:.4g} (min {seen_low:.4g}), but the training data were in [{low:.3g}, {high:.3g}]: "
        f"the outputs are not to be trusted. Fix: scale them like the training data ({fix})."
    )
