"""`python -m fashion_lab.export`: ONNX and torch.export files that take raw uint8 images and return the
checkpoint's probabilities, the JSON beside them, and one-line errors."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
import torch

import fashion_lab.export
from fashion_lab import MLPClassifier
from fashion_lab.cli.user_errors import DEBUG_HINT
from fashion_lab.data import training_scaling
from fashion_lab.export import main
from fashion_lab.synthetic import make_images


def checkpoint_probs(ckpt: Path, images: torch.Tensor) -> torch.Tensor:
    """What the checkpoint's model gives for uint8 images scaled as its training data were."""
    scaling = training_scaling(torch.load(ckpt, weights_only=True))
    model = MLPClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    with torch.no_grad():
        return model((images.float() / 255 - scaling["mean"]) / scaling["std"]).softmax(dim=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(make_images(7, num_classes=10, seed=3)[0])  # 7: not the batch exported with


def test_torch_export_program(fashion_checkpoint: Path, images: torch.Tensor, tmp_path: Path) -> None:
    main(["--ckpt_path", str(fashion_checkpoint), "--format", "torch_export", "--output", str(tmp_path / "m.pt2")])
    program = torch.export.load(tmp_path / "m.pt2").module()
    torch.testing.assert_close(program(images), checkpoint_probs(fashion_checkpoint, images), rtol=0, atol=1e-6)
    assert program(images[:1]).shape == (1, 10)  # any batch size


def test_onnx_model_and_its_json(fashion_checkpoint: Path, images: torch.Tensor, capsys: pytest.CaptureFixture) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
    main(["--ckpt_path", str(fashion_checkpoint)])  # onnx, beside the checkpoint: last.onnx
    model = fashion_checkpoint.with_suffix(".onnx")
    assert capsys.readouterr().out == f"Wrote {model} and {model}.json\n"
    session = ort.InferenceSession(str(model))
    (given,), (returned,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape) == ("image", "tensor(uint8)", ["batch", 28, 28])
    assert (returned.name, returned.shape) == ("probabilities", ["batch", 10])
    (probs,) = session.run(None, {"image": images.numpy()})
    torch.testing.assert_close(torch.from_numpy(probs), checkpoint_probs(fashion_checkpoint, images), rtol=0, atol=1e-5)
    card = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    saved = torch.load(fashion_checkpoint, weights_only=True)["FashionMNISTDataModule"]
    assert card["classes"][0] == "T-shirt/top" and card["input"]["dtype"] == "uint8" and card["model"] == "last.onnx"
    assert card["scaling"] == {"inside_the_model": "x = (image / 255 - mean) / std", **saved} and saved["std"] < 0.9
    config = fashion_checkpoint.parents[1] / "config.yaml"
    assert card["training_config"] == str(config)
    assert card["training_config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert any(step.startswith("invert if the border is light") for step in card["preprocessing"])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ckpt_path", "nope.ckpt"], 1, "error: checkpoint nope.ckpt does not exist. Fix: pass a .ckpt that fit"),
        (["--ckpt_path", "bad.ckpt"], 1, "error: checkpoint bad.ckpt is truncated or not a checkpoint ("),
        (["--ckpt_path", "x.ckpt", "--format", "tflite"], 2, "Expected a typing.Literal['onnx', 'torch_export']"),
    ],
)
def test_mistakes_print_one_line(
    args: list[str], code: int, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == code and message in capsys.readouterr().err


def test_a_folder_that_cannot_be_made_is_the_clis_one_line(
    fashion_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """export exits as every command does (`exit_on_user_error`): an OSError naming a path is the user's to fix."""
    monkeypatch.delenv("FASHION_LAB_DEBUG", raising=False)
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt_path", str(fashion_checkpoint), "--output", str(tmp_path / "afile" / "m.onnx")])
    assert exit_info.value.code == 1
    line, hint = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: File exists: {tmp_path / 'afile'}. Fix: choose a folder"), line
    assert hint == DEBUG_HINT


def test_an_oserror_naming_no_file_keeps_its_traceback(
    fashion_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a filename an OSError is not a mistake in the command line: a bug, reported with its traceback."""
    monkeypatch.delenv("FASHION_LAB_DEBUG", raising=False)

    def failing_write(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fashion_lab.export, "atomic_write", failing_write)
    with pytest.raises(OSError, match="Input/output error"):
        main(["--ckpt_path", str(fashion_checkpoint), "--format", "torch_export", "--output", str(tmp_path / "m.pt2")])
