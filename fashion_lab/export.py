"""Export a checkpoint as one self-contained model file: raw 28×28 images in, class probabilities out.

python -m fashion_lab.export --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --format onnx
python -m fashion_lab.export --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --format torch_export

The model takes uint8 images (N, 28, 28), 0..255, a light object on black as in Fashion-MNIST's files (a photo goes
through the preprocessing that `<file>.json` lists, `fashion_lab.pictures.prepare`), and returns float32
probabilities (N, C); the training data's scaling (x / 255, and its mean/std with `normalize`) is inside the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from fashion_lab.checkpoints import read_checkpoint, training_scaling
from fashion_lab.cli.user_errors import exit_on_user_error
from fashion_lab.errors import ConfigError, choose
from fashion_lab.model import MLPClassifier
from fashion_lab.picture_files import ImageFilesDataModule
from fashion_lab.sources import atomic_write

Format = Literal["onnx", "torch_export"]
SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}


class Probabilities(nn.Module):
    """uint8 images (N, 28, 28) → probabilities (N, C): the training data's scaling, the network, softmax."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, image: Tensor) -> Tensor:
        x = (image.float() / 255.0 - self.mean) / self.std  # InMemoryImages' scaling, as in training
        return self.net(x).softmax(dim=1)


def export(ckpt_path: str, format: Format = "onnx", output: str | None = None) -> Path:
    """Write the model file and `<file>.json` beside it (class names, scaling, preprocessing, the config's hash).

    Args:
        ckpt_path: a checkpoint that fit wrote (lightning_logs/version_N/checkpoints/*.ckpt).
        format: onnx (for onnxruntime in any language; needs the onnx extra) or torch_export (a .pt2 program:
            torch.export.load(path).module()(images)).
        output: the model file; default: beside the checkpoint, under its name (last.ckpt → last.onnx, last.pt2).
    """
    choose(SUFFIXES, format, "format")
    if format == "onnx" and importlib.util.find_spec("onnxscript") is None:
        raise ConfigError("--format onnx needs the onnx extra. Fix: pip install -e '.[onnx]' (onnx, onnxscript).")
    ckpt = Path(ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    model = MLPClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    scaling = training_scaling(checkpoint)
    wrapped = Probabilities(model.net, **scaling).eval()
    dest = Path(output) if output else ckpt.with_suffix(SUFFIXES[format])
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=dest.parent).close()  # can a file be made there? before the seconds of export
    except OSError as e:  # named as the user wrote it, not as the temporary file beside it
        raise ConfigError(
            f"cannot write {'--output ' + output if output else dest}: no file can be made in {dest.parent} "
            f"({e.strerror}). Fix: pass --output with a path in a folder that you can write to (default: beside the "
            "checkpoint)."
        ) from e
    example = torch.zeros(2, 28, 28, dtype=torch.uint8)  # 2, not 1: torch.export specialises a batch of 1
    batch = {"image": {0: torch.export.Dim("batch")}}
    with atomic_write(dest) as tmp, torch.no_grad():
        if format == "onnx":
            torch.onnx.export(
                wrapped, (example,), tmp, dynamo=True, input_names=["image"], output_names=["probabilities"],
                dynamic_shapes=batch, external_data=False, verbose=False,
            )  # fmt: skip
        else:
            program, buffer = torch.export.export(wrapped, (example,), dynamic_shapes=batch), io.BytesIO()
            torch.export.save(program, buffer)  # through memory: torch.export warns about a name not ending in .pt2
            tmp.write_bytes(buffer.getvalue())
    card = describe(dest, format, model.class_names, scaling, checkpoint, ckpt)
    with atomic_write(Path(f"{dest}.json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest


def describe(dest: Path, format: Format, classes: list[str], scaling: dict, checkpoint: dict, ckpt: Path) -> dict:
    """The JSON beside the model: what goes in, what comes out, and which training run made it."""
    config = ckpt.parent.parent / "config.yaml" if ckpt.parent.name == "checkpoints" else None
    if config is not None and config.is_file():
        hashed, source = config.read_bytes(), str(config)
    else:  # a checkpoint saved outside the CLI: the settings it holds
        settings = {k: checkpoint.get(k, {}) for k in ("hyper_parameters", "datamodule_hyper_parameters")}
        hashed, source = json.dumps(settings, sort_keys=True, default=str).encode(), "the checkpoint's hyperparameters"
    return {
        "model": dest.name,
        "format": format,
        "input": {
            "name": "image",
            "dtype": "uint8",
            "shape": ["N", 28, 28],
            "meaning": "grey 0..255, a light object on black filling the frame, as a row of Fashion-MNIST's files",
        },
        "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", len(classes)]},
        "classes": classes,
        "scaling": {"inside_the_model": "x = (image / 255 - mean) / std", **scaling},
        "preprocessing": ImageFilesDataModule(paths=[], classes=classes).preprocessing,
        "training_config": source,
        "training_config_sha256": hashlib.sha256(hashed).hexdigest(),
        "checkpoint": str(ckpt),
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "torch": torch.__version__,
    }


def main(args: list[str] | None = None) -> None:
    """`python -m fashion_lab.export --ckpt_path ... --format onnx`: a mistake prints one line and exits 1."""
    from jsonargparse import auto_cli

    try:
        dest = auto_cli(export, args=args, as_positional=False, prog="python -m fashion_lab.export")
    except Exception as e:
        exit_on_user_error(e)
        raise
    print(f"Wrote {dest} and {dest}.json")


if __name__ == "__main__":
    main()
