"""Keras' model.summary(): the rows, shapes and exact counts for the seed, two hidden layers and K49; the CLI prints
it once, without Lightning's chatter, and `--trainer.enable_model_summary false` hides it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import pytest

from fashion_lab import KerasSummary, MLPClassifier, keras_summary
from fashion_lab.summary import keras_layers
from tests.helpers.commands import SYNTHETIC, run_cli

SEED_TABLE = """\
Model: "sequential"
________________________________________________________________________________________
 Layer (type)                          Output Shape                             Param #
========================================================================================
 flatten (Flatten)                     (None, 784)                                    0
________________________________________________________________________________________
 dense (Dense)                         (None, 128)                              100,480
________________________________________________________________________________________
 dropout (Dropout)                     (None, 128)                                    0
________________________________________________________________________________________
 dense_1 (Dense)                       (None, 10)                                 1,290
========================================================================================
 Total params: 101,770 (397.54 KB)
 Trainable params: 101,770 (397.54 KB)
 Non-trainable params: 0 (0.00 B)
________________________________________________________________________________________"""

CHATTER = ("GPU available", "TPU available", "already configured", "Tip:", "litlogger", "Mode  | FLOPs")


def rows(text: str) -> list[tuple[str, str, str]]:
    """(name (Type), output shape, params) of each layer row of a printed table."""
    return re.findall(r"^ (\w+ \(\w+\)) +(\(None, \d+\)) +([\d,]+)$", text, re.M)


def test_seed_table_is_keras_exactly() -> None:
    assert keras_summary(MLPClassifier()) == SEED_TABLE
    assert all(len(line) <= 88 for line in SEED_TABLE.splitlines())


def test_two_hidden_layers_and_k49_counts() -> None:
    two = keras_summary(MLPClassifier(hidden=(256, 128)))
    assert rows(two) == [
        ("flatten (Flatten)", "(None, 784)", "0"),
        ("dense (Dense)", "(None, 256)", "200,960"),  # 784·256 + 256
        ("dropout (Dropout)", "(None, 256)", "0"),
        ("dense_1 (Dense)", "(None, 128)", "32,896"),  # 256·128 + 128
        ("dropout_1 (Dropout)", "(None, 128)", "0"),
        ("dense_2 (Dense)", "(None, 10)", "1,290"),
    ]
    assert " Total params: 235,146 (918.54 KB)" in two
    k49 = keras_summary(MLPClassifier(num_classes=49))
    assert rows(k49)[-1] == ("dense_1 (Dense)", "(None, 49)", "6,321")  # 128·49 + 49
    assert " Total params: 106,801 (417.19 KB)" in k49


def test_frozen_weights_and_no_bias_are_counted_as_keras_does() -> None:
    model = MLPClassifier(hidden=(), use_bias=False)
    model.net.logits.weight.requires_grad_(False)
    text = keras_summary(model)
    assert [(n, p) for n, _, _, p in keras_layers(model.net)] == [("flatten", 0), ("dense", 7_840)]
    assert " Trainable params: 0 (0.00 B)" in text and " Non-trainable params: 7,840 (30.62 KB)" in text


def test_not_a_dense_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="holds no DenseStack"):
        keras_summary(L.LightningModule())


def test_callback_logs_the_table_at_fit_start(fashion, caplog: pytest.LogCaptureFixture) -> None:
    """A library user's Trainer: the callback's table, through Lightning's summary logger; no default one beside."""
    logger = logging.getLogger("lightning.pytorch.callbacks.model_summary")
    logger.addHandler(caplog.handler)  # Lightning's loggers do not propagate to the root that caplog watches
    caplog.set_level(logging.INFO, logger=logger.name)  # a study run in this process quiets "lightning.pytorch"
    try:
        trainer = L.Trainer(fast_dev_run=1, callbacks=[KerasSummary()], logger=False, enable_progress_bar=False)
        trainer.fit(MLPClassifier(), datamodule=fashion(batch_size=32))
    finally:
        logger.removeHandler(caplog.handler)
    # the summary logger's records, each once (root's handler also sees them where Lightning's loggers propagate)
    records = {id(r): r for r in caplog.records if r.name == logger.name}.values()
    assert [r.getMessage() for r in records] == [SEED_TABLE]


def test_cli_prints_keras_table_and_no_chatter(k49_dir: Path, tmp_path: Path) -> None:
    data = ["--data", "K49DataModule", "--data.data_dir", str(k49_dir), "--data.download", "false"]
    fit = ["fit", *data, "--model.hidden", "[256, 128]", "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    done = run_cli([*fit, "--trainer.enable_progress_bar", "false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert rows(out) == [
        ("flatten (Flatten)", "(None, 784)", "0"),
        ("dense (Dense)", "(None, 256)", "200,960"),
        ("dropout (Dropout)", "(None, 256)", "0"),
        ("dense_1 (Dense)", "(None, 128)", "32,896"),
        ("dropout_1 (Dropout)", "(None, 128)", "0"),
        ("dense_2 (Dense)", "(None, 49)", "6,321"),
    ]
    assert out.count('Model: "sequential"') == 1 and " Total params: 240,177 (938.19 KB)" in out
    assert [c for c in CHATTER if c in out] == []
    assert "val_metrics" not in out and "MulticlassAccuracy" not in out  # no metric objects


def test_cli_enable_model_summary_false_hides_it(tmp_path: Path) -> None:
    from fashion_lab.synthetic import write_idx_set

    write_idx_set(tmp_path / "data", n_train=200, n_test=50)
    fit = ["fit", *SYNTHETIC, "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    done = run_cli([*fit, *quiet], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "Model:" not in out and "Total params" not in out and "Params" not in out
    assert [c for c in CHATTER if c in out] == []
