"""A run's files on disk: its own `version_N` folder, even when many runs start at once, and checkpoints that are
written whole or not at all and read without running code.

trainer = L.Trainer(logger=RunLogger("."), plugins=[AtomicCheckpointIO()])   # what the CLI uses
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from fashion_lab.errors import ConfigError
from fashion_lab.sources import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file in their own folder, then renamed into place; loaded weights-only.

    Lightning's TorchCheckpointIO stages the bytes in the system temp dir and moves them into place: across file
    systems (a tmpfs /tmp, a container overlay) that move is a copy into the checkpoint itself, and a kill or a full
    disk during the copy leaves a truncated `last.ckpt`. Here `os.replace` swaps the complete file in, so the old
    checkpoint stays until the new one is whole; a failed write removes its temporary file and raises an OSError
    naming the checkpoint. Loading always passes `weights_only=True`: a crafted checkpoint cannot run code.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first, so that what fails below is only the disk
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as tmp, open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint (else a crash can empty it)
        except OSError as e:
            raise OSError(
                e.errno, f"{e.strerror} while writing a checkpoint (the previous one is intact)", str(path)
            ) from e

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ConfigError(
                "weights_only=False would let the checkpoint run code while it loads; "
                "AtomicCheckpointIO loads checkpoints with weights_only=True only."
            )
        return super().load_checkpoint(path, map_location, weights_only=True)


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger, for many runs started at once in one folder, and no empty runs left behind.

    TensorBoardLogger picks `version_N` by listing the folder, so runs that start together can pick the same N and
    write into one folder. Here rank 0 claims its folder with `os.mkdir`, which exactly one process wins, and takes
    the next N when another run was first. A command that fails or is stopped before its first checkpoint removes
    the folder it claimed (an existing run that it logged into, e.g. for `test`, is never removed).
    """

    _claimed: str | None = None  # the version folder this logger made
    _made_root: bool = False  # and whether it also made save_dir/name

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        # only rank 0 makes folders; other DDP ranks get rank 0's log_dir by broadcast (trainer.log_dir)
        if rank_zero_only.rank != 0 or not isinstance(self._fs, LocalFileSystem):
            return version
        self._made_root = not os.path.isdir(self.root_dir)
        os.makedirs(self.root_dir, exist_ok=True)
        while True:
            folder = os.path.join(self.root_dir, f"version_{version}")
            try:
                os.mkdir(folder)
            except FileExistsError:
                version += 1
                continue
            self._claimed = folder
            return version

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "failed" and self._claimed and not any(Path(self._claimed).rglob("*.ckpt")):
            shutil.rmtree(self._claimed, ignore_errors=True)
            if self._made_root:
                with contextlib.suppress(OSError):  # not empty: another run has started there meanwhile
                    os.rmdir(self.root_dir)
