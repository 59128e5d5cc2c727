"""Checkpoints: reading one safely, resolving `last`, the training data's scaling, and upgrading older formats.

The one module that knows a checkpoint's layout; the CLI, the page, export, the model and the data ask it.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fashion_lab.errors import ConfigError, DataError

CKPT_FIX = "Fix: pass a .ckpt that fit wrote (lightning_logs/version_N/checkpoints/)."
SCALING = {"mean", "std"}  # an ImageDataModule's state_dict, which Lightning saves under the data module's class name


class CheckpointError(ConfigError):
    """--ckpt_path names a file that is missing, not a Lightning checkpoint, or crafted to run code."""


def resolve(ckpt_path: str, runs: Path) -> str:
    """`last` = the newest run's last.ckpt under `runs` (Lightning would look in the new, empty run); a missing file
    is refused with the fix."""
    if ckpt_path == "last":
        found = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
        if not found:
            raise CheckpointError(
                f"--ckpt_path last: no {runs}/version_*/checkpoints/last.ckpt to resume. "
                "Fix: start without --ckpt_path, or give the path of a checkpoint."
            )
        ckpt_path = str(found[-1])
    check_is_a_file(Path(ckpt_path), "or --ckpt_path last to resume the newest run")
    return ckpt_path


def check_is_a_file(ckpt: Path, also: str = "") -> None:
    """CheckpointError for a path that is not a file: a folder is named as one, with the checkpoints inside it."""
    if ckpt.is_dir():
        patterns = ["", "checkpoints/", "version_*/checkpoints/", "lightning_logs/version_*/checkpoints/"]
        inside = [found for pattern in patterns for found in ckpt.glob(f"{pattern}*.ckpt")]
        example = f" (in it: {', '.join(str(p) for p in sorted(inside)[:3])}{', ...' if len(inside) > 3 else ''})"
        raise CheckpointError(
            f"checkpoint {ckpt} is a folder, not a checkpoint file. Fix: pass a .ckpt file inside it"
            f"{example if inside else ''}{', ' + also if also else ''}."
        )
    if not ckpt.is_file():
        raise CheckpointError(
            f"checkpoint {ckpt} does not exist. Fix: pass a .ckpt that fit wrote "
            f"(lightning_logs/version_N/checkpoints/){', ' + also if also else ''}."
        )


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (tensors and plain data only: a crafted pickle cannot run code), and one
    CheckpointError naming the file for whatever else it holds."""
    check_is_a_file(Path(path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise CheckpointError(
                f"checkpoint {path} is truncated or not a checkpoint (unreadable pickle). {CKPT_FIX}"
            ) from e
        raise CheckpointError(
            f"checkpoint {path} holds a Python object ({found.group(1)}) that would run code when loaded; refused. "
            f"{CKPT_FIX} Load only checkpoints from a source you trust."
        ) from e
    except Exception as e:  # torch.load fails on a bad file with errors of many types, none naming the file
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a checkpoint ({type(e).__name__}: {e}). {CKPT_FIX}"
        ) from e
    if not (isinstance(checkpoint, dict) and {"state_dict", "hyper_parameters"} <= checkpoint.keys()):
        # a plain torch.save file (a state dict, a tensor): Lightning would fail on a missing key, naming no file
        raise CheckpointError(f"checkpoint {path} holds no model weights and settings (not written by fit). {CKPT_FIX}")
    return checkpoint


def training_scaling(checkpoint: dict) -> dict[str, float]:
    """The pixel mean and std of the data a checkpoint was trained on: the data module's state, which Lightning
    saves at the top level under the data module's class name."""
    state = next((v for v in checkpoint.values() if isinstance(v, dict) and v.keys() == SCALING), None)
    if state is not None:
        return {"mean": float(state["mean"]), "std": float(state["std"])}
    if checkpoint.get("datamodule_hyper_parameters", {}).get("normalize"):
        raise DataError(
            "the checkpoint was trained with normalize=True but does not hold the training data's mean and std "
            "(it predates them). Fix: train it again with this version, or run `test` once with it and --ckpt_path."
        )
    return {"mean": 0.0, "std": 1.0}


def range_of_old_checkpoint(checkpoint: dict) -> dict[str, Tensor]:
    """A checkpoint from before the model kept its training inputs' range: the range of its data module's batches,
    [0, 1] scaled by its mean and std, if it was trained with one of the data modules (else unknown: NaN)."""
    low = high = torch.tensor(float("nan"))
    if "datamodule_hyper_parameters" in checkpoint:
        try:
            mean, std = training_scaling(checkpoint).values()
            low, high = torch.tensor(-mean / std), torch.tensor((1 - mean) / std)
        except DataError:  # normalize without the statistics saved: unknown
            pass
    return {"input_low": low, "input_high": high}


def unknown_input_range(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a state dict without the input range (older than it) loads with the range unknown."""
    for name in ("input_low", "input_high"):
        state_dict.setdefault(prefix + name, torch.tensor(float("nan")))


def no_best_accuracy_yet(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a state dict older than `val_acc_best` loads with no best accuracy yet."""
    state_dict.setdefault(prefix + "val_acc_best.max_value", torch.tensor(float("-inf")))
