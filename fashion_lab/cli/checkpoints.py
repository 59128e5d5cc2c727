"""Checkpoints on the command line: reading one safely, resolving `--ckpt_path last`, the run it belongs to, the
data module it names, and the partial files a killed save leaves."""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from fashion_lab.errors import ConfigError

# the CLI's best-epoch checkpoint; dropped when there is no validation set to rank by
BEST = "epoch={epoch}-val_acc={val/acc:.4f}"


class CheckpointError(ConfigError):
    """--ckpt_path names a file that is missing, not a Lightning checkpoint, or crafted to run code."""


def checkpoint_callbacks() -> list[ModelCheckpoint]:
    """The best epoch by validation accuracy, and `last.ckpt` rewritten every epoch for `fit --ckpt_path last`.

    Two callbacks because Lightning 2.6 rewrites a `save_last` checkpoint only in epochs that also save a top-k one.
    """
    best = ModelCheckpoint(monitor="val/acc", mode="max", filename=BEST, auto_insert_metric_name=False)
    return [best, ModelCheckpoint(filename="last", enable_version_counter=False)]


CKPT_FIX = "Fix: pass a .ckpt that fit wrote (lightning_logs/version_N/checkpoints/)."


def read_checkpoint(path: str) -> dict:
    """torch.load with weights_only=True (tensors and plain data only: a crafted pickle cannot run code), and one
    CheckpointError naming the file for whatever else it holds."""
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


def data_defaults(checkpoint: dict, path: str) -> dict[str, Any] | None:
    """The checkpoint's data module as a `--data` value (class and init args); None if it has none."""
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = data.pop("_class_path", None)  # LightningCLI saves it with the data module's init args
    data.pop("_instantiator", None)
    if class_path is None:  # not written by this CLI: the data module stays as given
        return None
    if not is_data_module(class_path):
        raise CheckpointError(
            f"checkpoint {path} names the data module {class_path!r}, which is not "
            "one of fashion_lab's; refused (a checkpoint never chooses code to import). "
            "Fix: use a checkpoint that fit wrote, or pass --data explicitly."
        )
    return {"class_path": class_path, "init_args": data}


def is_data_module(class_path: str) -> bool:
    """`class_path` names an already imported LightningDataModule subclass (checked without importing anything)."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and issubclass(cls, LightningDataModule)


def tensorboard_args(logger: object) -> Namespace | None:
    """The init args of a TensorBoardLogger config (Lightning's, or RunLogger), else None."""
    module, _, name = str(getattr(logger, "class_path", "")).rpartition(".")
    cls = getattr(importlib.import_module(module), name, None) if module else None
    return logger.init_args if isinstance(cls, type) and issubclass(cls, TensorBoardLogger) else None


def resolve_ckpt_path(config: Namespace, subcommand: str) -> None:
    """`last` = the newest run's last.ckpt (Lightning would look in the new, empty run). The checkpoint's run
    takes this command's output: a resumed fit and a test log into it (TensorBoard shows one run), and predict
    writes its CSV there (or to --output) without opening a run of its own."""
    args = tensorboard_args(config.trainer.logger)
    runs = Path(args.save_dir) / args.name if args is not None else Path("lightning_logs")
    if config.ckpt_path == "last":
        found = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
        if not found:
            raise CheckpointError(
                f"--ckpt_path last: no {runs}/version_*/checkpoints/last.ckpt to resume. "
                "Fix: start without --ckpt_path, or give the path of a checkpoint."
            )
        config.ckpt_path = str(found[-1])
    ckpt = Path(config.ckpt_path)
    check_is_a_file(ckpt, "or --ckpt_path last for the newest run's last.ckpt")
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    if subcommand == "predict":  # Trainer(logger=False) writes to default_root_dir: no events file, no new run
        config.trainer.logger = False
        config.trainer.default_root_dir = config.output or config.trainer.default_root_dir or str(run or ckpt.parent)
    elif args is not None and run is not None and run.parent.resolve() == runs.resolve():
        args.version = run.name
    if subcommand == "fit":
        for stale in ckpt.parent.glob(".*.ckpt.*.part"):  # a save killed mid-write (SIGKILL, power loss)
            stale.unlink(missing_ok=True)


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


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The run's last.ckpt, relative to the current folder when inside it; None before the first one is saved."""
    dirs = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    path = next((Path(d, "last.ckpt") for d in dirs if Path(d, "last.ckpt").is_file()), None)
    if path is None:
        return None
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
