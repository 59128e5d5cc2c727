"""`predict` on a user's picture files: ImageFilesDataModule, the CSV with paths and top-3, the printed table,
predictions.png, and bad pictures that never lose the good ones."""

from __future__ import annotations

import csv
import os
import re
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from fashion_lab import ConfigError, DataError, FashionMNISTDataModule, ImageFilesDataModule, MLPClassifier
from fashion_lab.cli import cli_main
from fashion_lab.data import CLASSES
from fashion_lab.picture_files import expand
from fashion_lab.synthetic import make_images
from tests.helpers.commands import QUIET
from tests.helpers.photos import blank_pictures, png_bomb, write_photos
from tests.helpers.trainer import make_trainer

FASHION = list(FashionMNISTDataModule.classes)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 synthetic test images as user photos (JPEG, tinted, inverted onto white, a few hundred pixels)."""
    images, _ = make_images(12, num_classes=10, seed=1)
    return write_photos(images, tmp_path_factory.mktemp("photos"))


def predict(checkpoint: Path, *paths: str | Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The CLI arguments of `predict` with this checkpoint on picture files."""
    listed = ", ".join(f'"{p}"' for p in paths)
    data = ["--data", "ImageFilesDataModule", "--data.paths", f"[{listed}]"]
    return ["predict", "--ckpt_path", str(checkpoint), *data, *QUIET, *extra]


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """cli_main(args) → (exit status, stdout, stderr)."""
    try:
        cli_main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def written_csv(out: str) -> list[dict]:
    """The rows of the CSV that `predict` says it wrote."""
    path = re.search(r"Wrote [\d,]+ predictions to (\S+)", out).group(1)
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- the data module ---


def test_constructs_offline_with_named_or_listed_classes(tmp_path: Path) -> None:
    dm = ImageFilesDataModule(paths=str(tmp_path / "nothing" / "*.jpg"))
    assert dm.classes == tuple(FASHION) and dm.num_classes == 10
    assert ImageFilesDataModule(paths=[], classes="K49").classes == CLASSES["K49"]
    assert ImageFilesDataModule(paths=[], classes=["cat", "dog"]).classes == ("cat", "dog")
    assert not (tmp_path / "nothing").exists()


def test_the_class_path_before_the_move_still_names_it() -> None:
    """Configs written when the class lived in fashion_lab.data keep working: that path names the same class."""
    import fashion_lab.data

    assert fashion_lab.data.ImageFilesDataModule is ImageFilesDataModule
    with pytest.raises(AttributeError, match="has no attribute 'expand'"):
        fashion_lab.data.expand  # noqa: B018 (only the class paths a config can name are kept)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": "CIFAR10"}, "classes='CIFAR10' is out of range; allowed: a data set's name (FashionMNIST, MNIST,"),
        (
            {"classes": ["one"]},
            "classes=['one'] is out of range; allowed: a data set's name (FashionMNIST, MNIST, KMNIST, "
            "K49) or a list of 2 or more names.",
        ),
        ({"invert": "sometimes"}, "invert='sometimes' is not supported; choose one of auto, always, never."),
        ({"batch_size": 0}, "batch_size=0 is out of range; allowed: a positive integer."),
        ({"threshold": 1.0}, "threshold=1.0 is out of range; allowed: 0 <= threshold < 1"),
        ({"margin": 14}, "margin=14 is out of range; allowed: an integer 0..13"),
        ({"max_pixels": 0}, "max_pixels=0 is out of range"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ImageFilesDataModule(paths=[], **kwargs)


def test_expand_files_folders_globs(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", ".DS_Store", "sub/c.png", "sub/deeper/d.png", "empty/.hidden"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    given = [f"{tmp_path}/b.png", str(tmp_path), f"{tmp_path}/**/*.png", f"{tmp_path}/*.gif"]
    given += [f"{tmp_path}/gone.png", f"{tmp_path}/empty"]
    files, failures = expand(given)
    # each file once, where first named; a folder's files sorted, without hidden files and sub-folders
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["b.png", "a.jpg", "sub/c.png", "sub/deeper/d.png"]
    assert failures == [
        (f"{tmp_path}/*.gif", "the pattern matches no file"),
        (f"{tmp_path}/gone.png", "no such file or folder"),
        (f"{tmp_path}/empty", "the folder has no files"),
    ]


def test_only_for_predict() -> None:
    with pytest.raises(ConfigError, match=r"pictures without labels, for predict only \(got fit\)"):
        ImageFilesDataModule(paths=[]).setup("fit")


def test_setup_reads_the_good_and_names_the_bad(
    photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    dm = ImageFilesDataModule(paths=[str(photos[0]), str(notes), str(photos[1])])
    dm.setup("predict")
    assert dm.predict_set.paths == [str(photos[0]), str(photos[1])] and dm.predict_set.images.shape == (2, 28, 28)
    reason = "not an image (Pillow recognises no image format in it)"
    assert dm.predict_set.failures == [(str(notes), reason)]
    assert capsys.readouterr().err == f"skipped {notes}: {reason}\n"
    batch = next(iter(dm.predict_dataloader()))  # no trainer, no checkpoint: x / 255, no labels
    torch.testing.assert_close(batch, dm.predict_set.images.unsqueeze(1).float() / 255)


def test_no_readable_picture_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no picture to predict: none of .* could be read \(the reasons are above\)"):
        ImageFilesDataModule(paths=[str(tmp_path)]).setup("predict")


def test_takes_the_checkpoints_training_statistics(
    fashion_checkpoint: Path, photos: list[Path], tmp_path: Path
) -> None:
    saved = torch.load(fashion_checkpoint, weights_only=True)["FashionMNISTDataModule"]
    dm = ImageFilesDataModule(paths=[str(p) for p in photos[:3]])
    model = MLPClassifier.load_from_checkpoint(fashion_checkpoint, weights_only=True)
    probs = torch.cat(make_trainer(tmp_path).predict(model, dm, ckpt_path=fashion_checkpoint))
    assert (dm.mean, dm.std) == (saved["mean"], saved["std"]) and 0.1 < dm.std < 0.9
    x = (dm.predict_set.images.unsqueeze(1).float() / 255 - saved["mean"]) / saved["std"]
    torch.testing.assert_close(probs, model.eval()(x).softmax(dim=1))


def test_a_script_passes_the_statistics_with_load_state_dict(photos: list[Path], fashion) -> None:
    train = fashion(normalize=True)
    train.setup("fit")
    dm = ImageFilesDataModule(paths=[str(photos[0])])
    dm.load_state_dict(train.state_dict())
    dm.setup("predict")
    x = next(iter(dm.predict_dataloader()))
    torch.testing.assert_close(x, (dm.predict_set.images.unsqueeze(1).float() / 255 - train.mean) / train.std)


# --- the command line ---


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_predict_pictures(
    fashion_checkpoint: Path, photos: list[Path], workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run(predict(fashion_checkpoint, photos[0].parent), capsys)
    assert code == 0, err
    rows = written_csv(out)
    assert [r["path"] for r in rows] == [str(p) for p in photos]
    assert list(rows[0]) == ["index", "path", "pred", "pred_name", "prob", "pred2", "pred2_name", "prob2",
                             "pred3", "pred3_name", "prob3", "true", "true_name"]  # fmt: skip
    for row in rows:
        probs = [float(row[k]) for k in ("prob", "prob2", "prob3")]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-5
        assert row["pred_name"] == FASHION[int(row["pred"])] and row["true"] == ""
    # the summary table: a header, then one line per file with its three classes and probabilities
    lines = out.splitlines()
    assert lines[0].split() == ["file", "prediction", "2nd", "3rd"]
    assert lines[1].startswith(str(photos[0])) and f"{rows[0]['pred_name']} {float(rows[0]['prob']):.1%}" in lines[1]
    sheet = Path(re.search(r"Drew the first 12 in (\S+)", out).group(1))
    with Image.open(sheet) as png:
        assert png.format == "PNG" and png.size == (1200, 920)  # 4 rows of 3 (image, bars) pairs at 100 dpi


def test_pictures_named_with_other_classes_are_refused(
    fashion_checkpoint: Path, photos: list[Path], workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run(predict(fashion_checkpoint, photos[0], extra=("--data.classes", "MNIST")), capsys)
    assert code == 1
    assert (
        "error: the checkpoint was trained on the classes (T-shirt/top, Trouser, Pullover, ... 10 in all), but "
        "the pictures are being named with (0 - zero, 1 - one, 2 - two, ... 10 in all). Fix: --data.classes "
        "FashionMNIST." in err
    )
    code, _, err = run(predict(fashion_checkpoint, photos[0], extra=("--data.classes", "K49")), capsys)
    assert code == 1 and "trained for 10 classes, but this model (linked from the data) has 49" in err
    assert "for picture files, --data.classes with its data set's name" in err


def test_missing_checkpoint_keeps_its_error(photos: list[Path], workdir: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(predict(workdir / "nope.ckpt", photos[0]), capsys)
    assert code == 1 and f"error: checkpoint {workdir / 'nope.ckpt'} does not exist. Fix: pass a .ckpt" in err


# --- bad pictures never lose the good ones ---


def cut_jpeg(folder: Path) -> Path:
    data = write_photos(make_images(1, 10, seed=5)[0], folder / "src")[0].read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    return folder / "cut.jpg"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mixed_folder(folder: Path, photos: list[Path]) -> Path:
    """Two photos, a text file, an empty file, a truncated JPEG, a hidden file and a sub-folder, side by side."""
    mixed = folder / "mixed"
    write(mixed / "a_shirt.jpg", photos[0].read_bytes())
    write(mixed / "b_shoe.jpg", photos[1].read_bytes())
    write(mixed / "notes.txt", b"size M")
    write(mixed / "empty.png", b"")
    cut = cut_jpeg(folder)
    write(mixed / "c_cut.jpg", cut.read_bytes())
    write(mixed / ".DS_Store", b"\0\0\0\1Bud1")  # hidden: not a picture of the user's, skipped silently
    write(mixed / "sub" / "d.jpg", photos[2].read_bytes())  # a sub-folder's files only with a ** glob
    return mixed


TRUNCATED = "corrupt or truncated image (OSError: image file is truncated"
# case: (make the bad inputs in a folder → the inputs to add, {input named in the message: start of the reason})
BAD_CASES = {
    "truncated_jpeg": lambda d: ([cut_jpeg(d)], {"cut.jpg": TRUNCATED}),
    "not_an_image": lambda d: ([write(d / "notes.txt", b"size M")], {"notes.txt": "not an image (Pillow recognises"}),
    "empty_file": lambda d: ([write(d / "empty.png", b"")], {"empty.png": "empty file (0 bytes)"}),
    "decompression_bomb": lambda d: (
        [write(d / "bomb.png", png_bomb(8_000, 8_000))],
        {"bomb.png": "8000×8000 = 64,000,000 pixels, over the limit of 50,000,000 (a possible decompression bomb"},
    ),
    "glob_matches_nothing": lambda d: ([d / "*.heic"], {"*.heic": "the pattern matches no file"}),
    # files that are no pictures on disk: reading a FIFO would wait for a writer, a device would never end
    "fifo": lambda d: ([fifo(d / "pipe.png")], {"pipe.png": f"{NOT_REGULAR} a FIFO (named pipe). {PICTURE_FIX}"}),
    "socket": lambda d: ([unix_socket(d / "sock.png")], {"sock.png": f"{NOT_REGULAR} a socket. {PICTURE_FIX}"}),
    "device": lambda d: (["/dev/zero"], {"/dev/zero": f"{NOT_REGULAR} a character device. {PICTURE_FIX}"}),
}
NOT_REGULAR = "not a regular file but"
PICTURE_FIX = "Fix: give a picture file (PNG, JPEG, WebP, BMP, GIF)"


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the socket file stays after the socket closes
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", [*BAD_CASES, "mixed_folder"])
def test_bad_pictures_never_lose_the_good_ones(
    case: str, fashion_checkpoint: Path, photos: list[Path], workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = workdir / "bad"
    folder.mkdir()
    if case == "mixed_folder":
        inputs, good = [mixed_folder(folder, photos)], ["a_shirt.jpg", "b_shoe.jpg"]
        bad = {"c_cut.jpg": TRUNCATED, "empty.png": "empty file (0 bytes)", "notes.txt": "not an image (Pillow"}
        bad = {str(folder / "mixed" / name): reason for name, reason in bad.items()}
    else:
        added, bad = BAD_CASES[case](folder)
        inputs, good = [photos[0], *added, photos[1]], [str(photos[0]), str(photos[1])]
        bad = {str(folder / name): reason for name, reason in bad.items()}
    code, out, err = run(predict(fashion_checkpoint, *inputs), capsys)
    assert code == 1 and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(bad), err  # one line per bad input, naming it and the reason
    for line, (name, reason) in zip(skipped, bad.items(), strict=True):
        assert line.startswith(f"skipped {name}: {reason}"), line
    rows = written_csv(out)
    assert [Path(r["path"]).name for r in rows] == [Path(g).name for g in good]
    assert all(r["pred_name"] in FASHION and 0.0 < float(r["prob"]) <= 1.0 for r in rows)
    assert (
        f"error: {len(bad)} input(s) could not be read (each named above with the reason); the {len(good)} "
        "others were predicted and written to " in err
    )


def test_nothing_readable_fails_without_output(
    workdir: Path, fashion_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run(predict(fashion_checkpoint, write(workdir / "empty.png", b""), workdir / "*.heic"), capsys)
    assert code == 1 and "Wrote" not in out
    assert err.count("skipped ") == 2 and "error: no picture to predict: none of" in err


def test_no_object_gets_no_class(
    fashion_checkpoint: Path, photos: list[Path], workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    blanks = blank_pictures(workdir / "blank")
    code, out, err = run(predict(fashion_checkpoint, photos[0], *blanks), capsys)
    assert code == 0, err
    rows = written_csv(out)
    assert rows[0]["pred_name"] in FASHION and float(rows[0]["prob"]) > 0
    for row, picture in zip(rows[1:], blanks, strict=True):
        assert row["path"] == str(picture) and row["pred_name"] == "no object found"
        assert [row[k] for k in ("pred", "prob", "pred2", "pred2_name", "prob2", "pred3", "pred3_name", "prob3")] == [
            ""
        ] * 8
    for line, picture in zip(out.splitlines()[2:6], blanks, strict=True):  # the table: the header, the photo, these
        assert picture.name in line and line.endswith("  no object found"), out
