"""The tutorial's runs test on unscaled images (its `evaluate(x_test)` slip): test the same weights on x / 255 too,
so that the report shows what the slip costs."""

from __future__ import annotations

from typing import Any

import lightning as L

from fashion_lab.studies.recorder import TrialRecorder, scores_from_test


def scaled_test(trainer: L.Trainer, recorder: TrialRecorder) -> dict[str, Any]:
    """After a fit whose test ran on unscaled images: the test metrics and confusion matrix on x / 255, with the
    weights just tested; nothing for any other fit."""
    test_set = getattr(trainer.datamodule, "test_set", None)
    if not getattr(test_set, "unscaled", False):
        return {}
    test_set.unscaled = False
    try:
        (scores,) = trainer.test(trainer.lightning_module, datamodule=trainer.datamodule, verbose=False)
    finally:
        test_set.unscaled = True
    return {"test_scaled": scores_from_test(scores), "confusion_scaled": recorder.confmat.compute().tolist()}
