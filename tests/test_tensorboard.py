"""What a CLI `fit` writes for TensorBoard, read back with TensorBoard's own loader: Keras' `train` and `validation`
runs with the same tags at step = epoch, no `epoch` or `hp/` scalars, a histogram of every Dense kernel and bias per
epoch, the graph, the hidden units' image, and HPARAMS columns equal to the run's results."""

from __future__ import annotations

import io
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from fashion_lab import HiddenUnitsImage, KerasTensorBoardLogger, MLPClassifier, WeightHistograms, plots
from fashion_lab.callbacks import HP_METRICS
from fashion_lab.callbacks.histograms import write_histogram
from fashion_lab.cli import make_cli
from fashion_lab.plots import dense_units_figure
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import QUIET, SYNTHETIC
from tests.helpers.hparams_events import hparams_tab

EPOCHS = 3
ALL = {"scalars": 0, "histograms": 0, "images": 0}  # keep every event, not a sample


class EpochMetrics(L.Callback):
    """callback_metrics as they stand after each validation (the epoch's val/*, the previous epoch's train/*) and
    at the end of fit (the last epoch's)."""

    def __init__(self) -> None:
        self.after_validation: list[dict[str, float]] = []
        self.at_fit_end: dict[str, float] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.after_validation.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.at_fit_end = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def curve(self, key: str) -> list[float]:
        """The metric per epoch."""
        if key.startswith("val/"):
            return [m[key] for m in self.after_validation]
        return [m[key] for m in self.after_validation[1:]] + [self.at_fit_end[key]]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EpochMetrics, dict[str, float]]:
    """A 3-epoch CLI fit with its test on synthetic MNIST: (run folder, per-epoch metrics, test results)."""
    folder = tmp_path_factory.mktemp("layout_fit")
    write_idx_set(folder / "data", n_train=320, n_test=100)
    data = [a if a != "data" else str(folder / "data") for a in SYNTHETIC]
    metrics = EpochMetrics()
    args = ["fit", *data, *QUIET, "--trainer.max_epochs", str(EPOCHS), "--data.steps_per_execution", "4"]
    cli = make_cli([*args, "--trainer.logger.init_args.save_dir", str(folder)], callbacks=[metrics])
    test = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
    return folder / "lightning_logs" / "version_0", metrics, test


def load(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run), size_guidance=ALL)
    events.Reload()
    return events


def test_train_and_validation_runs_share_kerass_tags(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, metrics, _ = fitted
    for sub, stage in (("train", "train"), ("validation", "val")):
        events = load(run / sub)
        assert set(events.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
        for tag, key in (("epoch_loss", f"{stage}/loss"), ("epoch_accuracy", f"{stage}/acc")):
            written = events.Scalars(tag)
            assert [e.step for e in written] == list(range(EPOCHS))  # Keras' x axis: the epoch
            assert [e.value for e in written] == pytest.approx(metrics.curve(key), abs=1e-6)


def test_no_epoch_or_hp_scalars_and_one_epoch_axis(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, _, _ = fitted
    events = load(run)
    tags = events.Tags()["scalars"]
    assert "epoch" not in tags and not [t for t in tags if t.startswith("hp/")]
    assert {"val/balanced_acc", "val/acc_best", "run/epochs", "run/seconds", "test/acc"} <= set(tags)
    # every per-epoch scalar on the epoch axis; the test after fit at the number of epochs trained
    for tag in ("val/balanced_acc", "val/acc_best", "run/epochs"):
        assert [e.step for e in events.Scalars(tag)] == list(range(EPOCHS)), tag
    assert [e.step for e in events.Scalars("test/acc")] == [EPOCHS]
    assert [e.value for e in events.Scalars("run/epochs")] == [1, 2, 3]


def test_histograms_of_every_dense_kernel_and_bias(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, _, _ = fitted
    events = load(run)
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    layers = {"dense": "net.dense", "dense_1": "net.logits"}  # Keras' names, as model.summary() prints them
    assert {t for t in events.Tags()["histograms"]} == {f"weights/{k}/{w}" for k in layers for w in ("kernel", "bias")}
    for name, module in layers.items():
        for kind, param in (("kernel", "weight"), ("bias", "bias")):
            written = events.Histograms(f"weights/{name}/{kind}")
            assert [e.step for e in written] == list(range(EPOCHS))
            last, final = written[-1].histogram_value, weights[f"{module}.{param}"]
            # 30 buckets, as Keras' tf.summary writes, after torch's empty one below the minimum
            assert last.num == sum(last.bucket) == final.numel() and len(last.bucket) == 31 and last.bucket[0] == 0
            assert (last.min, last.max) == pytest.approx((final.min().item(), final.max().item()))
            assert last.sum == pytest.approx(final.sum().item(), abs=1e-3)


@pytest.mark.parametrize(
    "values",
    [
        torch.randn(128, 784, generator=torch.Generator().manual_seed(0)) * 0.05,
        torch.randn(10, generator=torch.Generator().manual_seed(1)),
        torch.zeros(7),
        torch.tensor([0.0, 0, 0, 1, 1, 1, 10]),
    ],
    ids=["kernel", "bias", "constant", "gaps"],
)
def test_histograms_are_what_add_histogram_writes(values: Tensor, tmp_path: Path) -> None:
    """write_histogram computes with torch what SummaryWriter.add_histogram computes with numpy: the same proto."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("numpy", values, 3, bins=30)
        write_histogram(writer, "torch", values, 3, bins=30)
    events = load(tmp_path)
    (numpy,), (ours,) = events.Histograms("numpy"), events.Histograms("torch")
    assert ours.step == numpy.step == 3
    numpy, ours = numpy.histogram_value, ours.histogram_value
    assert (ours.min, ours.max, ours.num, ours.sum) == (numpy.min, numpy.max, numpy.num, numpy.sum)
    assert ours.sum_squares == pytest.approx(numpy.sum_squares, rel=1e-12)
    assert list(ours.bucket) == list(numpy.bucket) and ours.bucket[0] == 0 and sum(ours.bucket) == values.numel()
    assert list(ours.bucket_limit) == pytest.approx(list(numpy.bucket_limit), rel=1e-12, abs=1e-15)


def test_the_graph(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, _, _ = fitted
    events = load(run)
    assert events.Tags()["graph"]
    nodes = [node.name for node in events.Graph().node]
    # the traced module tree: the LightningModule, its DenseStack, its two Linear layers
    assert any("MLPClassifier/DenseStack[net]/Linear[dense]" in n for n in nodes), nodes[:20]
    assert any("DenseStack[net]/Linear[logits]" in n for n in nodes)


def test_the_hidden_units_image(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, _, _ = fitted
    written = load(run).Images("weights/dense/units")
    assert [e.step for e in written] == list(range(EPOCHS))
    png = Image.open(io.BytesIO(written[-1].encoded_image_string))
    assert png.mode == "P"  # a palette PNG: a third of an RGB one's bytes, for the writer's pure-Python checksum
    pixels = np.asarray(png.convert("RGB"))
    # 128 units in 16 columns × 8 rows of 28 px tiles, 2 px apart and around, and the scale's strip below
    gap, strip = plots.UNIT_GAP, plots.SCALE_HEIGHT
    assert pixels.shape == (8 * (28 + gap) + gap + strip, 16 * (28 + gap) + gap, 3)
    kernel = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["net.dense.weight"]
    bound = kernel.abs().flatten().quantile(0.99)  # the scale's ends: the 99th percentile of |w|, beyond it saturated
    for unit in (0, 17, 127):  # unit k: row k // 16, column k % 16; its input pixel (i, j) at i, j in the tile
        top, left = gap + (unit // 16) * (28 + gap), gap + (unit % 16) * (28 + gap)
        tile = pixels[top : top + 28, left : left + 28]
        centre = len(plots.RDBU_R) // 2
        shades = (kernel[unit].reshape(28, 28) / bound * centre + centre).round().clamp(0, 2 * centre).long().numpy()
        assert (tile == plots.RDBU_R[shades]).all()


def test_the_colour_map_is_centred_on_zero() -> None:
    """A zero weight is the map's centre colour, the scale's ± bound its two ends, whatever the kernel's range."""
    kernel = torch.zeros(3, 784)
    kernel[0, 0], kernel[1, 5], kernel[2, 9] = 0.5, -0.5, 0.25
    pixels = np.asarray(dense_units_figure(kernel, (28, 28)).convert("RGB"))
    tile = lambda unit: pixels[plots.UNIT_GAP : plots.UNIT_GAP + 28, plots.UNIT_GAP + unit * 30 :][:, :28]  # noqa: E731
    assert (tile(0)[0, 0] == (103, 0, 31)).all() and (tile(1)[0, 5] == (5, 48, 97)).all()  # RdBu_r's two ends
    assert (tile(0)[5, 5] == (247, 247, 247)).all() and (tile(2)[1, 1] == (247, 247, 247)).all()  # 0: the centre
    assert (plots.RDBU_R[len(plots.RDBU_R) // 2] == (247, 247, 247)).all()
    assert pixels.shape[:2] == (30 + plots.UNIT_GAP + plots.SCALE_HEIGHT, 3 * 30 + plots.UNIT_GAP)  # 3 units: 3 × 1


def test_the_scale_strip_in_the_palette() -> None:
    """The strip below the tiles: the whole map as a ramp, and its two labels anti-aliased in the palette's greys."""
    image = dense_units_figure(torch.randn(128, 784, generator=torch.Generator().manual_seed(0)), (28, 28))
    assert image.mode == "P" and len(image.getpalette()) == 256 * 3
    strip = np.asarray(image)[-plots.SCALE_HEIGHT :]  # palette indices
    assert set(range(len(plots.RDBU_R))) <= set(np.unique(strip).tolist())  # every colour of the map, in order
    greys = np.unique(strip[(strip > plots.GAP_INDEX) & (strip < plots.WHITE_INDEX)])
    assert len(greys) >= 5 and plots.WHITE_INDEX - 15 in greys  # anti-aliased edges, and black at the glyphs' core


def test_colour_map_is_matplotlibs_rdbu_r() -> None:
    from matplotlib import colormaps

    reference = colormaps["RdBu_r"](np.linspace(0, 1, len(plots.RDBU_R)))[:, :3] * 255
    assert np.abs(plots.RDBU_R - reference).max() <= 3  # matplotlib's own table has 256 entries


def test_hparams_columns_equal_the_runs_results(fitted: tuple[Path, EpochMetrics, dict[str, float]]) -> None:
    run, metrics, test = fitted
    _, columns = hparams_tab(run)
    assert set(columns) == set(HP_METRICS)
    assert columns["hp/best_val_acc"] == pytest.approx(max(metrics.curve("val/acc")))
    for name in ("acc", "loss", "balanced_acc"):
        assert columns[f"hp/test_{name}"] == pytest.approx(test[f"test/{name}"])
    assert columns["hp/epochs"] == EPOCHS and 0 < columns["hp/seconds"] < 300


def test_a_plain_tensorboard_logger_gets_the_weights_too(fashion, tmp_path: Path) -> None:
    """The callbacks need only a TensorBoardLogger; without one (or without a DenseStack) they do nothing."""
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    callbacks = [WeightHistograms(), HiddenUnitsImage()]
    trainer = L.Trainer(max_epochs=1, logger=logger, callbacks=callbacks, enable_progress_bar=False)
    trainer.fit(MLPClassifier(hidden=(32, 16)), datamodule=fashion(batch_size=64))
    events = load(Path(logger.log_dir))
    assert len(events.Tags()["histograms"]) == 6  # dense, dense_1, dense_2: kernel and bias
    (image,) = events.Images("weights/dense/units")  # 32 units: 8 columns × 4 rows
    assert (image.width, image.height) == (8 * 30 + 2, 4 * 30 + 2 + plots.SCALE_HEIGHT)
    quiet = L.Trainer(fast_dev_run=1, logger=False, callbacks=callbacks, enable_progress_bar=False)
    quiet.fit(MLPClassifier(hidden=(32,)), datamodule=fashion(batch_size=64))
    assert quiet.state.finished


def test_the_logger_keeps_other_steps_and_names(tmp_path: Path) -> None:
    """A metric logged with its own step (the learning rate) keeps it; a name outside Keras' two stays as it is."""
    logger = KerasTensorBoardLogger(tmp_path)
    logger.log_metrics({"lr-Adam": 0.001}, step=40)
    logger.log_metrics({"val/acc": torch.tensor(0.5), "val/balanced_acc": 0.25, "epoch": 2}, step=99)
    logger.finalize("success")
    root, validation = load(Path(logger.log_dir)), load(Path(logger.log_dir) / "validation")
    assert [(e.step, e.value) for e in root.Scalars("lr-Adam")] == [(40, pytest.approx(0.001))]
    assert [(e.step, e.value) for e in root.Scalars("val/balanced_acc")] == [(2, 0.25)]
    assert [(e.step, e.value) for e in validation.Scalars("epoch_accuracy")] == [(2, 0.5)]
    assert "epoch" not in root.Tags()["scalars"] and "val/acc" not in root.Tags()["scalars"]
    assert not math.isnan(validation.Scalars("epoch_accuracy")[0].wall_time)


def test_a_full_disk_names_the_run_folder(tmp_path: Path) -> None:
    """TensorBoard's writer thread fails without a file name; the logger names its run, so the CLI prints one line."""
    import errno

    from fashion_lab.cli.user_errors import user_error_message

    class FullDisk:
        def flush(self) -> None:
            raise OSError(errno.EFBIG, "File too large")

    logger = KerasTensorBoardLogger(tmp_path)
    logger._runs = {"train": FullDisk()}
    with pytest.raises(OSError) as raised:
        logger.save()
    assert raised.value.filename == logger.log_dir and raised.value.errno == errno.EFBIG
    assert user_error_message(raised.value) == (
        f"File too large: {logger.log_dir}. Fix: free space there (or lift the file-size limit), then resume with "
        "--ckpt_path last."
    )


def test_the_quiet_disk_full_hook_is_installed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cli_main installs it; the second call keeps the first hook, which still passes other errors on."""
    import errno
    import threading

    from fashion_lab.cli.user_errors import quiet_disk_full_in_threads

    passed_on = []
    monkeypatch.setattr(threading, "excepthook", passed_on.append)
    quiet_disk_full_in_threads()
    hook = threading.excepthook
    quiet_disk_full_in_threads()
    assert threading.excepthook is hook and hook is not passed_on.append

    def report(error: BaseException) -> threading.ExceptHookArgs:
        return threading.ExceptHookArgs((type(error), error, None, None))

    full, bug = report(OSError(errno.ENOSPC, "No space left on device")), report(ValueError("a bug"))
    hook(full)
    hook(bug)
    assert passed_on == [bug]
