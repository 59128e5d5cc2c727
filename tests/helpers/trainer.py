"""A Trainer for tests that call `fit` in-process."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def make_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    """A quiet CPU Trainer: no progress bar, no checkpoints, no model summary unless asked for."""
    defaults = {
        "accelerator": "cpu",
        "default_root_dir": tmp_path,
        "logger": False,
        "enable_progress_bar": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "max_epochs": 1,
    }
    return L.Trainer(**{**defaults, **kwargs})
