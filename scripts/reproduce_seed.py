"""Re-run the seed tutorial's questions on real Fashion-MNIST and write reports/seed_study.md with its figures.

    python scripts/reproduce_seed.py            # every experiment, 5 epochs each (≈ 5 min on 2 CPU cores)
    python scripts/reproduce_seed.py --quick    # 1 epoch on a fifth of the data: checks the pipeline in < 2 min

K49 (the seed's homework) is added when its npz files are in --k49-dir.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch import nn

from fashion_lab import FashionMNISTDataModule, ImageDataModule, K49DataModule, MLPClassifier
from fashion_lab.plots import confusion_matrix_figure, most_confused

# name → MLPClassifier arguments that differ from the seed (Dense(128, relu), Dropout(0.2), Adam, sparse CE)
STUDIES = {
    "Q7 loss": {
        "cross_entropy (seed)": {},
        "mse, one-hot targets": {"loss": "mse"},
        "mse, raw integer label (the pitfall)": {"loss": "mse", "one_hot_targets": False},
    },
    "Q5 regularization": {
        "none (seed)": {},
        "l1(1e-4) on kernels": {"kernel_regularizer": "l1", "l1": 1e-4},
        "l2(1e-4) on kernels": {"kernel_regularizer": "l2", "l2": 1e-4},
        "adamw weight_decay 1e-2": {"optimizer": "adamw", "weight_decay": 1e-2},
    },
    "Q6 dropout": {f"dropout {rate}": {"dropout": rate} for rate in (0.0, 0.2, 0.5)},
    "Q4 activation": {name: {"activation": name} for name in ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")},
}


def train(dm: ImageDataModule, args: argparse.Namespace, **kwargs) -> tuple[MLPClassifier, dict[str, float], float]:
    """Fit with the seed's settings, then test; returns the model, its test metrics and the seconds it took."""
    L.seed_everything(42, verbose=False)
    model = MLPClassifier(num_classes=dm.num_classes, class_names=list(dm.classes), **kwargs)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.fraction,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    (scores,) = trainer.test(model, datamodule=dm, verbose=False)
    return model, scores, time.perf_counter() - start


def parameter_table(num_classes: int) -> list[str]:
    """Keras' model.summary(), with the arithmetic behind each count (the seed's question 1)."""
    model = MLPClassifier(num_classes=num_classes)
    rows = ["| layer | output shape | parameters | why |", "|---|---|---:|---|"]
    width = 784
    for name, layer in model.net.named_children():
        if isinstance(layer, nn.Linear):
            n = sum(p.numel() for p in layer.parameters())
            why = f"{width} inputs × {layer.out_features} units + {layer.out_features} biases"
            rows.append(f"| {name} (Dense) | (None, {layer.out_features}) | {n:,} | {why} |")
            width = layer.out_features
        else:
            rows.append(f"| {name} ({type(layer).__name__}) | (None, {width}) | 0 | |")
    total = sum(p.numel() for p in model.parameters())
    rows.append(f"| **total** | | **{total:,}** | |")
    return rows


def sparsity(model: MLPClassifier) -> float:
    """Share of first-layer kernel weights with |w| < 1e-3: what L1 does that L2 does not."""
    return (model.net.dense.weight.abs() < 1e-3).float().mean().item()


def save_weight_histograms(models: dict[str, MLPClassifier], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, model in models.items():
        ax.hist(
            model.net.dense.weight.detach().flatten().numpy(), bins=200, range=(-0.3, 0.3), histtype="step", label=name
        )
    ax.set(xlabel="first Dense kernel weight", ylabel="count", yscale="log", title="Weights after training")
    ax.legend()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 20%% of the training batches")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--k49-dir", default="data", help="where k49-*.npz may be (skipped when absent)")
    parser.add_argument("--out", default="reports", help="folder for seed_study.md and its PNGs")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run "GPU available" banners
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    args.epochs, args.fraction = (1, 0.2) if args.quick else (5, 1.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()

    dm = FashionMNISTDataModule(data_dir=args.data_dir, steps_per_execution=32)
    dm.prepare_data()
    setting = f"{args.epochs} epoch(s), batch 32, Keras split 48,000 / 12,000, {args.fraction:.0%} of training batches"
    report = [
        "# The seed's questions, answered by fashion_lab",
        "",
        f"Real Fashion-MNIST, {setting}; test set 10,000. Regenerate: `python scripts/reproduce_seed.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        "## Q1: why does the last layer have 1,290 parameters?",
        "",
        "Each of the 10 output units has one weight per input (128) plus one bias: 10 × (128 + 1) = 1,290.",
        "",
        *parameter_table(10),
        "",
        "For the 49 classes of K49 the last layer has 49 × 129 = 6,321 parameters (106,801 in all).",
        "",
    ]

    seed_model, seed_scores, _ = train(dm, args)
    confmat = confusion(seed_model, dm)
    confusion_matrix_figure(confmat, list(dm.classes), "Fashion-MNIST test set").savefig(
        out / "confusion_matrix.png", dpi=90
    )
    report += [
        "## Q2: which items get confused?",
        "",
        f"Seed network, test accuracy {seed_scores['test/acc']:.4f}. Rows are true classes, columns predictions.",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        *[f"- {line}" for line in most_confused(confmat, list(dm.classes), k=6)],
        "",
    ]

    for study, variants in STUDIES.items():
        rows = ["| variant | test acc | balanced acc | first-layer |w| < 1e-3 | seconds |", "|---|---:|---:|---:|---:|"]
        models = {}
        for name, kwargs in variants.items():
            model, scores, seconds = train(dm, args, **kwargs)
            models[name] = model
            rows.append(
                f"| {name} | {scores['test/acc']:.4f} | {scores['test/balanced_acc']:.4f} | "
                f"{sparsity(model):.1%} | {seconds:.1f} |"
            )
            print(study, name, f"{scores['test/acc']:.4f}", flush=True)
        report += [f"## {study}", "", *rows, ""]
        if study.startswith("Q5"):
            save_weight_histograms(models, out / "weight_histograms.png")
            report += ["![weight histograms](weight_histograms.png)", ""]

    k49_files = [Path(args.k49_dir) / name for name, _ in K49DataModule.resources]
    if all(f.is_file() for f in k49_files):
        k49 = K49DataModule(data_dir=args.k49_dir, download=False, steps_per_execution=32)
        _, scores, seconds = train(k49, args)
        report += [
            "## Homework: Kuzushiji-49",
            "",
            f"Test accuracy {scores['test/acc']:.4f}, balanced accuracy {scores['test/balanced_acc']:.4f} "
            f"({seconds:.0f} s). The seed reported 0.7575.",
            "",
        ]
    else:
        report += ["## Homework: Kuzushiji-49", "", f"Skipped: no K49 npz files in `{args.k49_dir}/`.", ""]

    report.append(f"Total time: {time.perf_counter() - begin:.0f} s.")
    (out / "seed_study.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"Wrote {out / 'seed_study.md'} in {time.perf_counter() - begin:.0f} s")


def confusion(model: MLPClassifier, dm: ImageDataModule) -> torch.Tensor:
    """Test-set confusion matrix (true classes on rows) with torchmetrics."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    metric = MulticlassConfusionMatrix(dm.num_classes)
    model.eval()
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            metric.update(model(x).argmax(dim=1), y)
    return metric.compute()


if __name__ == "__main__":
    main()
