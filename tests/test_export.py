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
from fashion_lab.export import main
from fashion_lab.synthetic import make_images
from tests.helpers.checkpoints import checkpoint_probs


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
        (["--ckpt_path", "."], 1, "error: checkpoint . is a folder, not a checkpoint file. Fix: pass a .ckpt file"),
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


@pytest.mark.parametrize("output", ["/proc/nope.pt2", "blocker/model.pt2"])
def test_an_unwritable_destination_is_named_as_given(
    output: str, fashion_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A folder where no file can be made, and a path under a file: named as the user wrote it, with the fix, before
    the export runs (no temporary .part file in the message), and nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file, where the output's folder would be\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt_path", str(fashion_checkpoint), "--format", "torch_export", "--output", output])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith(f"error: cannot write --output {output}: "), err
    assert err.rstrip().endswith("Fix: pass --output with a path in a folder that you can write to (default: beside "
                                 "the checkpoint).")  # fmt: skip
    assert ".part" not in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_an_oserror_naming_no_file_keeps_its_traceback(
    fashion_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export exits as every command does (`exit_on_user_error`): without a filename an OSError is no mistake of the
    user's but a bug, reported with its traceback."""
    monkeypatch.delenv("FASHION_LAB_DEBUG", raising=False)

    def failing_write(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fashion_lab.export, "atomic_write", failing_write)
    with pytest.raises(OSError, match="Input/output error"):
        main(["--ckpt_path", str(fashion_checkpoint), "--format", "torch_export", "--output", str(tmp_path / "m.pt2")])
