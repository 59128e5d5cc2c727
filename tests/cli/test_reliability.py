"""Every bad input through the real command line (a subprocess, real exit codes): one clear line, no traceback, and
nothing half-written left behind. Cases run concurrently (each is a ~5 s Python start-up) and are asserted one by one.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from fashion_lab.synthetic import idx_bytes, make_images, write_idx_set, write_k49
from tests.helpers.commands import FIT, QUIET, SYNTHETIC, run_cli
from tests.helpers.crafted import PWNED, RunsCode
from tests.helpers.paths import REPO

K49 = ["--data", "K49DataModule", "--data.data_dir", "data", "--data.download", "false"]


def snapshot(folder: Path) -> dict[str, str]:
    """md5 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def folders(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_dir()}


# --- data faults, each written into a fresh folder's data/ -------------------------------------------------------


def mnist(tmp: Path) -> None:
    write_idx_set(tmp / "data", n_train=100, n_test=20)


def truncated_gz(tmp: Path) -> None:
    mnist(tmp)
    path = tmp / "data" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])


def wrong_magic(tmp: Path) -> None:
    mnist(tmp)
    _, labels = make_images(100, 10)
    raw = bytearray(idx_bytes(labels))
    raw[2] = 0x0D  # 0x00000801 → 0x00000d01: not the IDX uint8 type byte
    (tmp / "data" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))


def labels_out_of_range(tmp: Path) -> None:
    write_idx_set(tmp / "data", n_train=100, n_test=20, num_classes=12)  # labels 0..11 for MNIST's 10 classes


def count_mismatch(tmp: Path) -> None:
    mnist(tmp)
    _, labels = make_images(90, 10)
    (tmp / "data" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def k49(tmp: Path) -> None:
    write_k49(tmp / "data", n_train=98, n_test=49)


def k49_images(tmp: Path, **arrays: np.ndarray) -> None:
    k49(tmp)
    np.savez_compressed(tmp / "data" / "k49-train-imgs.npz", **arrays)


def npz_wrong_key(tmp: Path) -> None:
    k49_images(tmp, images=make_images(98, 49)[0])


def npz_wrong_shape(tmp: Path) -> None:
    k49_images(tmp, arr_0=make_images(98, 49)[0].reshape(98, 784))


def npz_wrong_dtype(tmp: Path) -> None:
    k49_images(tmp, arr_0=make_images(98, 49)[0].astype(np.float32) / 255)  # pixels saved as x / 255


def misspelled_config(tmp: Path) -> None:
    mnist(tmp)
    (tmp / "typo.yaml").write_text("model:\n  dropuot: 0.3\n")


def log_dir_under_a_file(tmp: Path) -> None:
    mnist(tmp)
    (tmp / "blocker").write_text("a file, so no folder can be made under it (chmod does not stop root)\n")


def corrupt_checkpoint(tmp: Path) -> None:
    mnist(tmp)
    (tmp / "corrupt.ckpt").write_bytes(os.urandom(4096))


def truncated_checkpoint(tmp: Path, good: Path) -> None:
    mnist(tmp)
    (tmp / "truncated.ckpt").write_bytes(good.read_bytes()[:20_000])


def good_checkpoint_k49(tmp: Path, good: Path) -> None:
    k49(tmp)
    shutil.copy(good, tmp / "mnist10.ckpt")


def good_checkpoint_copy(tmp: Path, good: Path) -> None:
    mnist(tmp)
    shutil.copy(good, tmp / "good.ckpt")


def checkpoint_in_a_folder(tmp: Path, good: Path) -> None:
    mnist(tmp)
    (tmp / "runs").mkdir()
    shutil.copy(good, tmp / "runs" / "good.ckpt")


def empty_config(tmp: Path) -> None:
    mnist(tmp)
    (tmp / "empty.yaml").write_text("")


def data_dir_is_a_file(tmp: Path) -> None:
    mnist(tmp)
    (tmp / "afile").write_text("not a folder\n")


# --- checkpoints crafted to run code: the marker file must never appear -------------------------------------------


def crafted_checkpoint(tmp: Path) -> None:
    mnist(tmp)
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": RunsCode(tmp / PWNED)}, tmp / "crafted.ckpt")


def checkpoint_naming_foreign_code(tmp: Path, good: Path) -> None:
    """Plain data only (weights_only loads it), but its data module is a class in a module that runs on import."""
    mnist(tmp)
    (tmp / "evil.py").write_text(f"open({str(tmp / PWNED)!r}, 'w').write('imported')\nclass Data: ...\n")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["_class_path"] = "evil.Data"
    torch.save(checkpoint, tmp / "foreign.ckpt")


@dataclass
class Case:
    id: str
    args: list[str]
    says: tuple[str, ...]  # fragments of the one error line: the problem, the bad value, the fix
    setup: Callable[..., None] = mnist
    code: int = 1  # ours: 1; jsonargparse's parser errors: 2
    needs_good_checkpoint: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # the FASHION_LAB_DEBUG hint under the line: only where the message does not name the value and the fix itself
    hint: bool = False


K49_FIT = ["fit", *K49, *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"]
CKPT_FIX = "Fix: pass a .ckpt that fit wrote"
HINT = "(set FASHION_LAB_DEBUG=1 to see the traceback)"
PARSER_FIX = "tip: For details of accepted options run"  # jsonargparse's usage + error, exit 2
LIGHTNING_REFUSED = "Lightning refused the configuration: "
LIGHTNING_FIX = "Fix: change the option it names (`fashion-lab fit --help` lists every option)."
CRAFTED = ("checkpoint crafted.ckpt holds a Python object (exec) that would run code when loaded; refused.", CKPT_FIX)
CASES = [
    Case("missing_data", FIT, ("MNIST file train-images-idx3-ubyte.gz not found", "--data.download true"), setup=None),
    Case("truncated_gz", FIT, ("train-images-idx3-ubyte.gz is unreadable or truncated", "Fix:"), setup=truncated_gz),
    Case("idx_wrong_magic", FIT, ("not an IDX labels file: magic number 0x00000d01", "Fix:"), setup=wrong_magic),
    Case(
        "npz_wrong_key",
        K49_FIT,
        ("has arrays ['images'], expected one array under the key 'arr_0'", "Fix:"),
        npz_wrong_key,
    ),
    Case(
        "npz_wrong_shape", K49_FIT, ("uint8 array of shape (98, 784), expected 3 dimensions", "Fix:"), npz_wrong_shape
    ),
    Case("npz_wrong_dtype", K49_FIT, ("holds a float32 array", "N×28×28 uint8 images). Fix:"), npz_wrong_dtype),
    Case("labels_out_of_range", FIT, ("labels in 0..11, expected 0..9", "Fix:"), labels_out_of_range),
    Case("count_mismatch", FIT, ("has 100 images but", "has 90 labels", "Fix:"), count_mismatch),
    Case(
        "unknown_loss",
        [*FIT, "--model.loss", "crossentropy"],
        ('"model.loss"', "'cross_entropy'", "Got value: crossentropy"),
        code=2,
    ),
    Case(
        "unknown_activation",
        [*FIT, "--model.activation", "rleu"],
        ('"model.activation"', "'relu'", "Got value: rleu"),
        code=2,
    ),
    Case(
        "unknown_initializer",
        [*FIT, "--model.kernel_initializer", "xavier"],
        ('"model.kernel_initializer"', "'glorot_uniform'", "Got value: xavier"),
        code=2,
    ),
    Case(
        "unknown_optimizer",
        [*FIT, "--model.optimizer", "adamax"],
        ('"model.optimizer"', "'adam'", "Got value: adamax"),
        code=2,
    ),
    Case(
        "unknown_constraint",
        [*FIT, "--model.kernel_constraint", "maxnorm"],
        ('"model.kernel_constraint"', "'max_norm'", "Given value: maxnorm"),
        code=2,
    ),
    Case("dropout_1", [*FIT, "--model.dropout", "1.0"], ("dropout=1.0 is out of range; allowed: 0 <= dropout < 1",)),
    Case("dropout_negative", [*FIT, "--model.dropout", "-0.1"], ("dropout=-0.1 is out of range",)),
    Case("val_split_1", [*FIT, "--data.val_split", "1.0"], ("val_split=1.0 is out of range; allowed: a fraction",)),
    Case("val_split_negative", [*FIT, "--data.val_split", "-0.2"], ("val_split=-0.2 is out of range",)),
    Case(
        "batch_size_0", [*FIT, "--data.batch_size", "0"], ("batch_size=0 is out of range; allowed: a positive integer",)
    ),
    Case("batch_size_negative", [*FIT, "--data.batch_size", "-32"], ("batch_size=-32 is out of range",)),
    Case("hidden_0", [*FIT, "--model.hidden", "[128, 0]"], ("hidden=(128, 0) is out of range; allowed: positive",)),
    Case(
        "num_classes_flag",
        [*FIT, "--model.num_classes", "5"],
        ('"model.num_classes" must be given via "data.num_classes"',),
        code=2,
    ),
    Case(
        "test_10_class_ckpt_on_k49",
        ["test", *K49, *QUIET, "--ckpt_path", "mnist10.ckpt"],
        ("trained for 10 classes", "has 49. Fix:"),
        good_checkpoint_k49,
        needs_good_checkpoint=True,
    ),
    Case(
        "predict_10_class_ckpt_on_k49",
        ["predict", *K49, *QUIET, "--ckpt_path", "mnist10.ckpt"],
        ("trained for 10 classes", "has 49. Fix:"),
        good_checkpoint_k49,
        needs_good_checkpoint=True,
    ),
    Case("config_missing", [*FIT, "--config", "nope.yaml"], ('"config": File does not exist:', "nope.yaml"), code=2),
    Case(
        "config_misspelled_key",
        [*FIT, "--config", "typo.yaml"],
        ("does not accept option 'model.dropuot'",),
        misspelled_config,
        code=2,
    ),
    Case(
        "log_dir_unwritable",
        [*FIT, "--trainer.logger.init_args.save_dir", "blocker/logs"],
        ("Not a directory:", "blocker/logs. Fix: choose a folder"),
        log_dir_under_a_file,
        hint=True,  # the traceback shows which step tried to make the folder
    ),
    Case("ckpt_missing_fit", [*FIT, "--ckpt_path", "nope.ckpt"], ("checkpoint nope.ckpt does not exist", CKPT_FIX)),
    Case(
        "ckpt_is_a_folder",
        ["test", *SYNTHETIC, *QUIET, "--ckpt_path", "runs"],
        (
            "checkpoint runs is a folder, not a checkpoint file. Fix: pass a .ckpt file inside it "
            "(in it: runs/good.ckpt), or --ckpt_path last",
        ),
        checkpoint_in_a_folder,
        needs_good_checkpoint=True,
    ),
    Case(
        "config_empty",
        [*FIT, "--config", "empty.yaml"],
        ("--config empty.yaml holds no settings (it is empty, or comments only). Fix: put settings in it",),
        empty_config,
    ),
    *[
        Case(
            f"trainer_{name}_{value}",
            [*FIT, f"--trainer.{name}", value],
            (f"trainer.{name}={value} is out of range; allowed: {allowed}",),
        )
        for name, value, allowed in [
            ("log_every_n_steps", "-1", "an integer >= 0 (0: no per-step logging)."),
            ("min_epochs", "-2", "an integer >= 0, or null."),
            ("check_val_every_n_epoch", "0", "an integer >= 1, or null"),
            ("accumulate_grad_batches", "0", "an integer >= 1."),
            ("num_sanity_val_steps", "-3", "an integer >= 0, or -1 (the whole validation set)."),
        ]
    ],
    Case(
        "ckpt_missing_test",
        ["test", *SYNTHETIC, *QUIET, "--ckpt_path", "nope.ckpt"],
        ("checkpoint nope.ckpt does not exist", CKPT_FIX),
    ),
    Case(
        "ckpt_corrupt_fit",
        [*FIT, "--ckpt_path", "corrupt.ckpt"],
        ("checkpoint corrupt.ckpt is truncated or not a checkpoint", CKPT_FIX),
        corrupt_checkpoint,
    ),
    Case(
        "ckpt_truncated_predict",
        ["predict", *SYNTHETIC, *QUIET, "--ckpt_path", "truncated.ckpt"],
        ("checkpoint truncated.ckpt is truncated or not a checkpoint", CKPT_FIX),
        truncated_checkpoint,
        needs_good_checkpoint=True,
    ),
    # Lightning's own checks of its options: the same one line (Trainer errors: 1; jsonargparse's type checks: 2)
    Case(
        "trainer_max_epochs_negative",
        [*FIT, "--trainer.max_epochs", "-5"],
        (LIGHTNING_REFUSED + "`max_epochs` must be a non-negative integer or -1. You passed in -5.", LIGHTNING_FIX),
    ),
    Case(
        "trainer_precision_7",
        [*FIT, "--trainer.precision", "7"],
        ('Parser key "trainer.precision"', "'bf16-mixed'", "Given value: 7"),
        code=2,
    ),
    Case(
        "trainer_devices_0",
        [*FIT, "--trainer.devices", "0"],
        (LIGHTNING_REFUSED + "`Trainer(devices='0')` value is not a valid input", LIGHTNING_FIX),
    ),
    Case(
        "trainer_strategy_unknown",
        [*FIT, "--trainer.strategy", "dpp"],
        (LIGHTNING_REFUSED + "You selected an invalid strategy name: `strategy='dpp'`", LIGHTNING_FIX),
    ),
    Case(
        "trainer_limit_train_batches_1_5",
        [*FIT, "--trainer.limit_train_batches", "1.5"],
        (LIGHTNING_REFUSED + "You have passed invalid value 1.5 for limit_train_batches", LIGHTNING_FIX),
    ),
    Case(
        "trainer_limit_train_batches_tiny",
        [*FIT, "--trainer.limit_train_batches", "0.0001"],
        (LIGHTNING_REFUSED + "You requested to check 0.0001 of the `train_dataloader`", LIGHTNING_FIX),
    ),
    # degenerate data, refused before training with the numbers
    Case(
        "val_split_leaves_no_training",
        [*FIT, "--data.val_split", "0.99999"],
        ("val_split=0.99999 leaves 0 of the training file's 100 images to train on, fewer than one batch of 32.",),
    ),
    Case(
        "split_smaller_than_a_batch",
        [*FIT, "--data.batch_size", "90"],
        ("val_split=0.2 leaves 80 of the training file's 100 images to train on, fewer than one batch of 90.",),
    ),
    Case("limit_train_batches_0", [*FIT, "--trainer.limit_train_batches", "0"], ("limit_train_batches=0 leaves no",)),
    Case(
        "val_check_interval_0",
        [*FIT, "--trainer.val_check_interval", "0"],  # was Lightning's ZeroDivisionError traceback
        ("val_check_interval=0 never validates", "Fix: remove --trainer.val_check_interval, or give it a positive"),
    ),
    Case(
        "no_validation_early_stopping",
        [*FIT, "--data.val_split", "0", "--config", str(REPO / "configs" / "early_stopping.yaml")],
        ("val_split=0.0 leaves no validation set, but EarlyStopping monitors val/acc. Fix:",),
    ),
    Case(
        "no_validation_reduce_on_plateau",
        [*FIT, "--data.val_split", "0", "--model.lr_schedule", "reduce_on_plateau"],
        ("val_split=0.0 leaves no validation set, but lr_schedule=reduce_on_plateau monitors val/loss. Fix:",),
    ),
    Case(
        "limit_val_batches_0_early_stopping",
        [*FIT, "--trainer.limit_val_batches", "0", "--config", str(REPO / "configs" / "early_stopping.yaml")],
        ("limit_val_batches=0 leaves no validation set, but EarlyStopping monitors val/acc. Fix:",),
    ),
    Case(
        "data_dir_is_a_file",
        [*FIT, "--data.data_dir", "afile"],
        ("data_dir='afile' is a file, not a folder. Fix:",),
        data_dir_is_a_file,
    ),
    # crafted checkpoints: refused on every path that reads one, and their code never runs
    Case("crafted_ckpt_fit", [*FIT, "--ckpt_path", "crafted.ckpt"], CRAFTED, crafted_checkpoint),
    Case("crafted_ckpt_test", ["test", *QUIET, "--ckpt_path", "crafted.ckpt"], CRAFTED, crafted_checkpoint),
    Case("crafted_ckpt_predict", ["predict", *QUIET, "--ckpt_path", "crafted.ckpt"], CRAFTED, crafted_checkpoint),
    Case(
        "crafted_ckpt_data_class",
        ["test", *QUIET, "--ckpt_path", "foreign.ckpt"],
        ("checkpoint foreign.ckpt names the data module 'evil.Data', which is not one of fashion_lab's; refused",),
        checkpoint_naming_foreign_code,
        needs_good_checkpoint=True,
    ),
    Case(
        "weights_only_false",
        ["test", *QUIET, "--ckpt_path", "good.ckpt", "--weights_only", "false"],
        ("weights_only=False would let the checkpoint run code while it loads",),
        good_checkpoint_copy,
        needs_good_checkpoint=True,
    ),
    Case(
        "loss_nan_lr",
        [*FIT, "--model.optimizer", "sgd", "--model.lr", "1e12"],
        ("training loss is nan at epoch 0, step ", "Fix: lower the learning rate"),
    ),
    Case(
        "loss_inf_l2",
        [*FIT, "--model.kernel_regularizer", "l2", "--model.l2", "1e38"],
        ("training loss is inf at epoch 0, step ", "Fix: lower"),
    ),
]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a one-epoch fit on the synthetic MNIST files (10 classes)."""
    folder = tmp_path_factory.mktemp("good")
    mnist(folder)
    result = run_cli(FIT, folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, good_checkpoint: Path) -> dict:
    """Every selected case run at once (two at a time per core): id -> (result, folder, files before the run)."""
    selected = {i.callspec.id for i in request.session.items if getattr(i, "originalname", "") == "test_bad_input"}

    def one(case: Case) -> tuple:
        folder = tmp_path_factory.mktemp(case.id)
        if case.setup is not None:
            case.setup(folder, good_checkpoint) if case.needs_good_checkpoint else case.setup(folder)
        before = snapshot(folder), folders(folder)
        return case.id, (run_cli(case.args, folder, **case.env), folder, before)

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        return dict(pool.map(one, [c for c in CASES if c.id in selected]))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes: dict) -> None:
    result, folder, (before, dirs_before) = outcomes[case.id]
    assert result.returncode == case.code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    message = result.stderr[result.stderr.index(errors[0]) :]  # parser errors list the allowed words below it
    for fragment in case.says:
        assert fragment in message, (fragment, message)
    if case.code == 2:
        assert PARSER_FIX in result.stderr  # jsonargparse names the option and how to list what is accepted
    else:
        assert message.rstrip().endswith(HINT) == case.hint, message
        assert len(message.rstrip().splitlines()) == 1 + case.hint, message
    # nothing half-written: the inputs are untouched, no temporary file, no checkpoint of a failed run
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    new = sorted(set(after) - set(before))
    assert not [p for p in new if p.endswith((".ckpt", ".part")) or "/." in f"/{p}"], new
    assert folders(folder) == dirs_before  # no run folder (or any other) from a command that failed
    assert not (folder / PWNED).exists()  # no input ran code


def test_debug_env_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli(FIT, tmp_path, FASHION_LAB_DEBUG="1")  # no data files: DataError
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "fashion_lab.errors.DataError: MNIST file train-images-idx3-ubyte.gz not found" in result.stderr


@pytest.mark.slow
def test_divergence_never_replaces_a_good_checkpoint(tmp_path: Path) -> None:
    """Resume a good run and let the loss overflow: the run stops naming epoch and step; the good last.ckpt stays."""
    mnist(tmp_path)
    assert run_cli(FIT, tmp_path).returncode == 0
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    # A resume takes the model's settings from the checkpoint (and the optimizer's lr from its state), so poison
    # the saved settings: finite weights, but an l2 factor that overflows the loss on the first resumed step.
    ckpt = torch.load(checkpoints / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"].update(kernel_regularizer="l2", l2=1e38)
    torch.save(ckpt, checkpoints / "last.ckpt")
    good = snapshot(checkpoints)
    result = run_cli([*FIT, "--ckpt_path", "last", "--trainer.max_epochs", "3"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: training loss is inf at epoch 1, step 6. Fix: lower the learning rate" in result.stderr
    assert snapshot(checkpoints) == good
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_nan_weights_are_never_saved(tmp_path: Path) -> None:
    """Weights that went NaN after the last finite loss of an epoch: saving refuses, and writes no file."""
    import lightning as L

    from fashion_lab import FiniteGuard, MLPClassifier, NonFiniteLossError

    model = MLPClassifier()
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, max_epochs=0, callbacks=[FiniteGuard()]
    )
    trainer.strategy.connect(model)
    with torch.no_grad():
        model.net.logits.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"weights became NaN or infinite at epoch 0, step 0; no checkpoint"):
        trainer.save_checkpoint(tmp_path / "nan.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_load_from_checkpoint_refuses_crafted(tmp_path: Path) -> None:
    """The library path: Lightning's load_from_checkpoint refuses the crafted pickle; the payload is live."""
    from fashion_lab import MLPClassifier

    crafted_checkpoint(tmp_path)
    for weights_only in (True, None):  # None: torch's default, weights-only since torch 2.6
        with pytest.raises(pickle.UnpicklingError, match="Unsupported global: GLOBAL exec"):
            MLPClassifier.load_from_checkpoint(tmp_path / "crafted.ckpt", weights_only=weights_only)
    assert not (tmp_path / PWNED).exists()
    torch.load(tmp_path / "crafted.ckpt", weights_only=False)  # what every path above refuses to do
    assert (tmp_path / PWNED).read_text() == "code ran"
