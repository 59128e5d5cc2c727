"""Whole-process wall time and peak memory of fashion_lab's ways to train against a hand-written PyTorch loop.

    python scripts/benchmark.py                 # 5 rotated rounds on real Fashion-MNIST, then a K49-sized run
    python scripts/benchmark.py --repeats 3 --no-k49
    python scripts/benchmark.py --denormal      # only: `fit` with denormals kept or flushed, plain and with L2
    python scripts/benchmark.py --against 8257e34   # only: the seed's `fit` at that commit, here, and here without
                                                    # the weight histograms, hidden units' image and graph

After the rotation, one `fit --trainer.profiler simple` gives the seconds spent in TensorBoardFigures' hooks, and the
same figures painted and PNG-encoded here, alone, give the CPU seconds of the drawing in them.

(a) scripts/handwritten_loop.py: the same model, data, optimizer, epochs and batch size, no framework (the floor);
(b) `python -m fashion_lab.cli fit --config configs/fashion_mnist.yaml`: everything on (metrics, TensorBoard
figures, checkpoints, progress bar, the final test), steps_per_execution 32;
(c) the README's library example (scripts/library_example.py): plain batches, automatic optimization;
(d) the same with the data module's steps_per_execution=32.
Each is a fresh process, run in rotation a, b, c, d, a, b, ... so that machine noise hits all alike; medians and
the ratio to (a) are printed with each one's peak RSS. The K49-sized part writes 232,365 + 38,547 synthetic images
in the official npz format and fits one epoch.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


# `fit` without what the CLI writes for TensorBoard's HISTOGRAMS, IMAGES (the hidden units) and GRAPHS tabs (the graph
# goes with --trainer.logger.init_args.log_graph false): Lightning skips a hook that is None
WITHOUT_WEIGHTS = """import sys
from fashion_lab.callbacks import HiddenUnitsImage, WeightHistograms
from fashion_lab.cli import cli_main
WeightHistograms.on_train_epoch_end = HiddenUnitsImage.on_train_epoch_end = None
cli_main(sys.argv[1:])"""
# Student's t at 97.5% for n - 1 degrees of freedom: a paired difference beyond t × its standard error is not noise
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def run(cmd: list[str], cwd: Path, tree: Path = REPO) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, which must succeed."""
    start = time.perf_counter()
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        # this checkout's fashion_lab (or `tree`'s), not whichever one pip installed (the child runs in a temporary
        # folder)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the sum over all children
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(cwd / 'stderr.txt').read_text()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def compare(
    name: str,
    programs: dict[str, list[str]],
    repeats: int,
    versus: str = "hand-written loop",
    trees: dict[str, Path] | None = None,
) -> dict[str, list[float]]:
    """Run the programs in rotation `repeats` times; the first (`versus` names it) is the reference of every ratio.
    `trees`: the checkout a program runs (this one by default). Returns each program's seconds, round by round."""
    times: dict[str, list[float]] = {label: [] for label in programs}
    rss: dict[str, list[float]] = {label: [] for label in programs}
    for i in range(repeats):
        for label, cmd in programs.items():
            with tempfile.TemporaryDirectory() as cwd:
                seconds, peak = run(cmd, Path(cwd), (trees or {}).get(label, REPO))
                out = (Path(cwd) / "stdout.txt").read_text().splitlines()
                score = next((ln for ln in reversed(out) if ln.startswith(("test acc", "Test (", "0."))), "")
            times[label].append(seconds)
            rss[label].append(peak)
            print(f"  round {i + 1} {label[:3]} {seconds:6.2f} s, peak RSS {peak:5.0f} MiB   {score}", flush=True)
    medians = {label: statistics.median(t) for label, t in times.items()}
    reference = next(iter(medians.values()))
    print(f"\n{name} ({repeats} rounds, medians)")
    print(f"| program | wall | peak RSS | vs {versus} |\n|---|---:|---:|---:|")
    for label, median in medians.items():
        print(f"| {label} | {median:.2f} s | {max(rss[label]):.0f} MiB | {median / reference:.2f}× |")
    print()
    return times


def paired_difference(label: str, times: list[float], reference: list[float]) -> str:
    """`label`'s seconds minus the reference's, round by round (the same round ran both under the same load): mean
    ± sd, and whether the mean is beyond noise (|mean| > t × sd / √n, Student's t at 97.5%)."""
    differences = [t - r for t, r in zip(times, reference, strict=True)]
    mean, n = statistics.mean(differences), len(differences)
    sd = statistics.stdev(differences) if n > 1 else float("nan")
    margin = T_975.get(n - 1, 2.0) * sd / math.sqrt(n)
    verdict = "beyond noise" if abs(mean) > margin else "within noise"
    slower = sum(d > 0 for d in differences)
    return f"{label}: {mean:+.2f} ± {sd:.2f} s a round ({verdict}: ±{margin:.2f} s; slower in {slower} of {n} rounds)"


def fit_arguments(tree: Path, epochs: int) -> list[str]:
    """`fit`'s arguments for the seed's settings, with `tree`'s own config."""
    return ["fit", "--config", str(tree / "configs" / "fashion_mnist.yaml"), "--trainer.max_epochs", str(epochs)]


def against(revision: str, epochs: int, repeats: int) -> None:
    """The seed's `fit` at `revision` (with its own config), in this checkout, and here without the weights'
    TensorBoard output, in rotation; then the differences round by round."""
    cli, here = [sys.executable, "-m", "fashion_lab.cli"], fit_arguments(REPO, epochs)
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        then = f"(a) `fit` at {revision}"
        programs = {
            then: [*cli, *fit_arguments(Path(old), epochs)],
            f"(b) `fit` at {head.stdout.strip()}{' with changes' if dirty() else ''}": [*cli, *here],
            "(c) (b) without histograms, units image, graph": [
                sys.executable, "-c", WITHOUT_WEIGHTS, *here, "--trainer.logger.init_args.log_graph", "false",
            ],
        }  # fmt: skip
        a, b, c = compare(f"The seed's `fit` against {revision}", programs, repeats, "(a)", {then: Path(old)}).values()
    print(paired_difference(f"(b) - (a), `fit` now against {revision}", b, a))
    print(paired_difference("(b) - (c), the weight histograms, the hidden units' image and the graph", b, c))
    parts = weights_output_seconds(epochs)
    each = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in parts.items())
    print(f"The same, in one process, written and flushed: {each}")
    print(f"of which the histograms and the graph: {parts['histograms'] + parts['graph']:.3f} s")


def dirty() -> bool:
    """Whether this checkout has uncommitted changes to tracked files (then (b) is not HEAD as committed)."""
    status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "-uno"], capture_output=True, text=True)
    return bool(status.stdout.strip())


def figures_profile(fit: list[str]) -> dict[str, float]:
    """Seconds in each TensorBoardFigures hook over one `fit` and its test, from Lightning's simple profiler."""
    with tempfile.TemporaryDirectory() as cwd:
        run([*fit, "--trainer.profiler", "simple", "--trainer.enable_progress_bar", "false"], Path(cwd))
        text = (Path(cwd) / "stdout.txt").read_text() + (Path(cwd) / "stderr.txt").read_text()
    report = text[text.rfind("Profiler Report") :]  # the test's report is the last, and counts the fit's hooks too
    hooks = re.findall(r"\[Callback\]TensorBoardFigures\.(\w+)\s*\|\s*[\d.e-]+\s*\|\s*\d+\s*\|\s*([\d.e-]+)", report)
    return {hook: float(total) for hook, total in hooks}


def figures_cpu_seconds(epochs: int) -> float:
    """CPU seconds to paint and encode what TensorBoardFigures writes in a seed `fit` and its test: a confusion
    matrix per epoch and one at test, the sample inputs and misclassified grids (32 each), the 15-image sheet."""
    import torch

    from fashion_lab import FashionMNISTDataModule, plots
    from fashion_lab.callbacks import image_summary

    names, g = list(FashionMNISTDataModule.classes), torch.Generator().manual_seed(0)
    confmat = torch.randint(0, 120, (10, 10), generator=g) + 1000 * torch.eye(10, dtype=torch.long)
    images, titles = torch.rand(32, 1, 28, 28, generator=g), [f"{names[i % 10]} / {names[-i % 10]}" for i in range(32)]
    probs = torch.rand(15, 10, generator=g).softmax(dim=1)
    figures = [partial(plots.confusion_matrix_figure, confmat, names, "val confusion matrix")] * (epochs + 1)
    figures += [partial(plots.image_grid_figure, images, titles)] * 2
    figures += [partial(plots.prediction_sheet_figure, images[:15], probs, names, [i % 10 for i in range(15)])]
    image_summary("warm-up", figures[-1]())  # imports and font loading: once a process
    start = time.process_time()
    for figure in figures:
        image_summary("figure", figure()).SerializeToString()  # what TensorBoardFigures writes
    return time.process_time() - start


def weights_output_seconds(epochs: int) -> dict[str, float]:
    """Wall seconds of what the CLI writes about the weights in a seed `fit`, in this process, each written and
    flushed (so that TensorBoard's pure-Python checksums, in its writer thread, count): the graph once, with the
    first trace's imports, then `epochs` times every Dense kernel and bias as a histogram, and the hidden units'
    image. The weights are the seed network's initial ones: noisier than trained ones, so a larger image."""
    from fashion_lab import HiddenUnitsImage, KerasTensorBoardLogger, MLPClassifier, WeightHistograms

    model, seconds = MLPClassifier(), {}
    with tempfile.TemporaryDirectory() as folder:
        logger = KerasTensorBoardLogger(folder, log_graph=True)
        # what the two callbacks read of their trainer
        trainer = SimpleNamespace(loggers=[logger], is_global_zero=True, current_epoch=0)
        writer = logger.experiment
        start = time.perf_counter()
        logger.log_graph(model)
        writer.flush()
        seconds["graph"] = time.perf_counter() - start
        for name, callback in (("histograms", WeightHistograms()), ("units image", HiddenUnitsImage())):
            start = time.perf_counter()
            for _ in range(epochs):
                callback.on_train_epoch_end(trainer, model)
                writer.flush()
            seconds[name] = time.perf_counter() - start
        logger.finalize("success")
    return seconds


def epoch_seconds(dm_class: type, data_dir: str) -> float:
    """Seconds of one training epoch (no validation, no logging) in this process, for the scaling check."""
    import lightning as L

    from fashion_lab import MLPClassifier

    dm = dm_class(data_dir=data_dir, download=False, val_split=0.2, steps_per_execution=32)
    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    dm.setup("fit")
    model = MLPClassifier(num_classes=dm.num_classes)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-k49", action="store_true", help="skip the K49-sized memory and scaling runs")
    parser.add_argument("--denormal", action="store_true", help="only: `fit` with and without --flush_denormal")
    parser.add_argument("--against", metavar="REV", help="only: the seed's `fit` at git revision REV against this one")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; torch from {sys.prefix}\n", flush=True)

    epochs = ["--epochs", str(args.epochs)]
    floor = [sys.executable, str(REPO / "scripts" / "handwritten_loop.py"), *epochs]
    fit = [sys.executable, "-m", "fashion_lab.cli", *fit_arguments(REPO, args.epochs)]
    if args.against:
        against(args.against, args.epochs, args.repeats)
        return
    if args.denormal:
        # L2 shrinks unused weights into denormal floats (below 1.2e-38), which x86 multiplies on a slow path
        l2 = ["--model.kernel_regularizer", "l2", "--model.l2", "1e-3"]
        programs = {
            "(a) `fit --flush_denormal false`": [*fit, "--flush_denormal", "false"],
            "(b) `fit` (flushes denormals)": fit,
            "(c) `fit --flush_denormal false`, L2 1e-3": [*fit, *l2, "--flush_denormal", "false"],
            "(d) `fit`, L2 1e-3 (flushes denormals)": [*fit, *l2],
        }
        compare("Fashion-MNIST, the seed's settings, denormals kept or flushed", programs, args.repeats, "(a)")
        return
    example = [sys.executable, str(REPO / "scripts" / "library_example.py"), "--max-epochs", str(args.epochs)]
    programs = {
        "(a) hand-written PyTorch loop": floor,
        "(b) `python -m fashion_lab.cli fit`": fit,
        "(c) README library example": example,
        "(d) README library example, `steps_per_execution=32`": [*example, "--steps-per-execution", "32"],
    }
    compare("Fashion-MNIST, the seed's settings", programs, args.repeats)
    hooks = figures_profile(fit)
    top = ", ".join(f"{hook} {seconds:.3f}" for hook, seconds in sorted(hooks.items(), key=lambda h: -h[1])[:4])
    print(f"TensorBoardFigures in `fit` and its test (--trainer.profiler simple): {sum(hooks.values()):.2f} s ({top})")
    drawing = figures_cpu_seconds(args.epochs)
    print(f"of which its {args.epochs + 4} figures painted and PNG-encoded, alone: {drawing:.2f} s CPU\n")
    if args.no_k49:
        return

    with tempfile.TemporaryDirectory() as k49_dir:
        # written by a child process: a forked child inherits its parent's peak RSS, so this one stays small
        write = f"import pathlib, fashion_lab.synthetic as s; s.write_k49(pathlib.Path({k49_dir!r}), 232_365, 38_547)"
        subprocess.run([sys.executable, "-c", write], check=True)
        k49 = ["--data", "K49DataModule", "--data.data_dir", k49_dir, "--data.download", "false"]
        floor_k49 = [*floor[:2], "--epochs", "1", "--k49", k49_dir]
        k49_programs = {"(a) hand-written loop": floor_k49, "(b) `fit`": [*fit, *k49, "--trainer.max_epochs", "1"]}
        compare("K49-sized synthetic set, 1 epoch", k49_programs, 1)
        from fashion_lab import FashionMNISTDataModule, K49DataModule

        fashion, k49_epoch = epoch_seconds(FashionMNISTDataModule, "data"), epoch_seconds(K49DataModule, k49_dir)
    print(f"One training epoch (in-process): Fashion-MNIST {fashion:.2f} s, K49-sized {k49_epoch:.2f} s,")
    print(f"ratio {k49_epoch / fashion:.2f}× for {185_892 / 48_000:.2f}× the samples")


if __name__ == "__main__":
    main()
