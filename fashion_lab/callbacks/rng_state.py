"""torch's global RNG state in checkpoints, so a resumed run continues exactly."""

from __future__ import annotations

import lightning as L
import torch

from fashion_lab.steps_per_execution import NoStepHooks


class RNGState(NoStepHooks, L.Callback):
    """Save torch's global RNG (CPU and CUDA) in checkpoints and restore it on resume, so a resumed run's dropout
    masks continue where the saved run was and its weights equal an uninterrupted run's.

    Lightning restores weights, optimizer, loops and callbacks, not the global RNG. The state is set again in
    `on_train_start`, after the sanity check, whose DataLoader draws a seed from it.
    """

    def __init__(self) -> None:
        self.resume_state: dict | None = None

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():  # dropout masks on a GPU come from CUDA's generators
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.resume_state = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.resume_state is None:
            return
        torch.set_rng_state(self.resume_state["torch"])
        if "cuda" in self.resume_state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.resume_state["cuda"])
        self.resume_state = None
