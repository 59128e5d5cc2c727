"""fashion_lab from another Lightning project: the two `_target_` configs of configs/lightning-hydra-template/ composed
and instantiated by Hydra with a template user's overrides, then fit and test; and `LightningCLI(MLPClassifier,
FashionMNISTDataModule)` in a user's own script."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import pytest

from fashion_lab import ConfigError, FashionMNISTDataModule, K49DataModule, MLPClassifier
from tests.helpers.commands import QUIET, run_command
from tests.helpers.paths import REPO
from tests.helpers.trainer import make_trainer

hydra = pytest.importorskip("hydra", reason="hydra-core, in the dev extra")
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

CONFIGS = REPO / "configs" / "lightning-hydra-template"


def config(*overrides: str):
    """The template's `model=fashion_lab data=fashion_mnist`, with its `paths.data_dir` and the user's overrides."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(overrides=["+model=fashion_lab", "+data=fashion_mnist", "+paths.data_dir=data", *overrides])


def test_the_configs_instantiate_the_seed() -> None:
    cfg = config()
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    assert isinstance(model, MLPClassifier) and isinstance(dm, FashionMNISTDataModule)
    assert (model.hparams.num_classes, model.hparams.lr, tuple(model.hparams.hidden)) == (10, 0.001, (128,))
    assert (dm.batch_size, dm.eval_batch_size, dm.val_split, dm.pin_memory, dm.num_workers) == (32, 256, 0.2, False, 0)
    assert model.hparams.num_classes == dm.num_classes


def test_a_template_users_overrides() -> None:
    """The template's debug configs and test fixture set data.pin_memory and data.num_workers; a sweep sets model.lr;
    K49 takes the data module's class and the model's num_classes."""
    cfg = config(
        "data.pin_memory=true",
        "data.num_workers=0",
        "data.batch_size=128",
        "model.lr=0.005",
        "+model.optimizer=adamw",
        "data._target_=fashion_lab.K49DataModule",
        "model.num_classes=49",
    )
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    assert isinstance(dm, K49DataModule) and dm.num_classes == model.hparams.num_classes == 49
    assert (dm.pin_memory, dm.batch_size, model.hparams.lr, model.hparams.optimizer) == (True, 128, 0.005, "adamw")


def test_the_search_space_names_options_that_exist() -> None:
    """The Optuna search config (its sweeper plugin is the template's, not installed here): every parameter it
    searches is an option of the model or the data module."""
    yaml = pytest.importorskip("yaml")
    search = yaml.safe_load((CONFIGS / "hparams_search" / "fashion_lab_optuna.yaml").read_text())
    assert search["optimized_metric"] == "val/acc_best"
    options = {
        "model": inspect.signature(MLPClassifier).parameters,
        "data": inspect.signature(FashionMNISTDataModule).parameters,
    }
    params = search["hydra"]["sweeper"]["params"]
    assert {"model.lr", "model.dropout", "data.batch_size"} <= params.keys()
    configs = {
        w: yaml.safe_load((CONFIGS / w / f).read_text())
        for w, f in [("model", "fashion_lab.yaml"), ("data", "fashion_mnist.yaml")]
    }
    for name in params:
        where, option = name.split(".")
        assert option in options[where] and option in configs[where], name  # Hydra overrides only keys it has


def test_the_template_split_option_says_what_to_use() -> None:
    cfg = config("+data.train_val_test_split=[55000,5000,10000]")
    with pytest.raises(InstantiationException) as e:
        instantiate(cfg.data)
    assert isinstance(e.value.__cause__, ConfigError)
    assert "Fix: remove it and set val_split: 0.08333 (5,000 of the 60,000 training images)." in str(e.value)


def test_fit_and_test_one_epoch_from_the_configs(fashion_dir: Path, tmp_path: Path) -> None:
    L.seed_everything(0)
    cfg = config(f"paths.data_dir={fashion_dir}", "+data.download=false")
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    trainer = make_trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    trainer.fit(model, dm)
    assert trainer.callback_metrics["val/acc_best"] == trainer.callback_metrics["val/acc"] > 0.5
    # as the template's train.py: the best checkpoint, which Lightning reads with torch.load(weights_only=True)
    (scores,) = trainer.test(model, dm, ckpt_path="best", verbose=False)
    assert scores["test/acc"] > 0.5 and "test/class_acc/Ankle_boot" in scores
    assert type(model.hparams.hidden) is list  # not Hydra's ListConfig


USER_SCRIPT = """
from lightning.pytorch.cli import LightningCLI

from fashion_lab import FashionMNISTDataModule, MLPClassifier

if __name__ == "__main__":
    LightningCLI(MLPClassifier, FashionMNISTDataModule)
"""


@pytest.mark.slow
def test_a_users_own_lightning_cli(fashion_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(USER_SCRIPT, encoding="utf-8")
    helped = run_command(["main.py", "fit", "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr[-2000:]
    for option in ("--model.num_classes", "--model.dropout", "--data.pin_memory", "--data.drop_last"):
        assert option in helped.stdout
    data = ["--data.data_dir", str(fashion_dir), "--data.download", "false", "--seed_everything", "0"]
    fit = run_command(["main.py", "fit", *data, *QUIET, "--trainer.max_epochs", "2"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (ckpt,) = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    test = run_command(["main.py", "test", *data, *QUIET, "--ckpt_path", str(ckpt)], tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    acc = float(re.search(r"test/acc\s*│\s*([0-9.]+)", test.stdout).group(1))
    assert acc > 0.5
    assert "sync_dist" not in fit.stderr + test.stderr


def test_the_readme_shows_the_configs_as_they_are() -> None:
    yaml = pytest.importorskip("yaml")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From lightning-hydra-template")[1].split("\n### ")[0]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    files = [yaml.safe_load((CONFIGS / f).read_text()) for f in ("model/fashion_lab.yaml", "data/fashion_mnist.yaml")]
    assert blocks == files
