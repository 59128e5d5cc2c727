"""The builders of reports/seed_study.md: one section per seed question, from what the study storage holds (tables,
verdicts, figures); scripts/reproduce_seed.py runs the studies and writes the file."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import warnings
from pathlib import Path
from typing import Any

import lightning
import matplotlib
import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

import fashion_lab
from fashion_lab import MLPClassifier
from fashion_lab.plots import confusion_matrix_figure, most_confused
from fashion_lab.studies.command import DEFAULT_STORAGE
from fashion_lab.studies.definition import GridStudy, StudyDefinition, study_name
from fashion_lab.studies.experiments import SEARCH
from fashion_lab.studies.results import grid_results
from fashion_lab.studies.stats import mean_sd, verdict, welch
from fashion_lab.studies.storage import load
from fashion_lab.summary import keras_layers

SECTIONS = {
    "loss": "Q7 loss",
    "activation": "Q4 activation",
    "dropout": "Q6 dropout",
    "regularization": "Q5 regularization",
}


def parameter_table(num_classes: int) -> list[str]:
    """Keras' model.summary() rows (`keras_layers`, the rows `keras_summary` prints), with the arithmetic behind each
    Dense count (the seed's question 1)."""
    layers = keras_layers(MLPClassifier(num_classes=num_classes).net)
    rows = ["| layer | output shape | parameters | why |", "|---|---|---:|---|"]
    width = None
    for name, kind, shape, params in layers:
        units = shape[-1]
        why = f" {width} inputs × {units} units + {units} biases " if kind == "Dense" else " "
        rows.append(f"| {name} ({kind}) | ({', '.join(map(str, shape))}) | {params:,} |{why}|")
        width = units
    rows.append(f"| **total** | | **{sum(layer[-1] for layer in layers):,}** | |")
    return rows


def mean_curve(trials: list[FrozenTrial], key: str) -> np.ndarray:
    """The per-epoch mean over seeds of a stored curve (NaN where no seed has the epoch)."""
    curves = [t.user_attrs["curves"].get(key, []) for t in trials]
    epochs = max(map(len, curves), default=0)
    grid = np.full((len(curves), epochs), np.nan)
    for row, curve in zip(grid, curves, strict=True):
        row[: len(curve)] = [np.nan if v is None else v for v in curve]
    with warnings.catch_warnings():  # an epoch no seed reached: NaN, drawn as a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(grid, axis=0)


def curves_figure(results: dict[str, list[FrozenTrial]], title: str) -> matplotlib.figure.Figure:
    """One panel per variant: mean train and validation loss per epoch; the gap between them is overfitting."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [n for n, ts in results.items() if ts]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(max(3.2 * cols, 7), 2.6 * rows + 0.7), layout="constrained")
    # Keras' losses: a regularizer's penalty is in both, so their gap still measures overfitting
    fig.suptitle(f"{title}: loss per epoch, mean over seeds\nsolid: train, dashed: validation (with any penalty)")
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        for key, style in (("train/loss", "-"), ("val/loss", "--")):
            curve = mean_curve(results[name], key)
            ax.plot(np.arange(1, len(curve) + 1), curve, style, marker="o", markersize=3, label=key)
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        if k == 0:
            ax.legend(fontsize=7)
    return fig


def weights_figure(results: dict[str, list[FrozenTrial]], title: str) -> matplotlib.figure.Figure:
    """The first Dense kernel's histogram per variant, mean over seeds, log scale: L1 piles weights up at 0."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for k, (name, trials) in enumerate((n, ts) for n, ts in results.items() if ts):
        counts = np.mean([t.user_attrs["weights"]["counts"] for t in trials], axis=0)
        low, high = trials[0].user_attrs["weights"]["range"]
        edges = np.linspace(low, high, len(counts) + 1)
        # matplotlib's 10 colours come round again from the 11th variant: dashed, so no two lines look alike
        ax.stairs(counts, edges, label=name, linestyle="-" if k < 10 else "--")
    ax.set(xlabel="first Dense kernel weight", ylabel="count (mean over seeds)", yscale="log", title=title)
    ax.legend(fontsize=7, ncols=2)
    return fig


def grid_section(storage: Any, name: str, data: str, out: Path, heading: str) -> list[str]:
    """A grid study's table (mean ± sd, difference to the seed's variant), verdicts, curves and weight figures."""
    found = find(storage, study_name(name, data))
    if found is None:
        return [heading, "", f"Not run yet: `python -m fashion_lab.studies {name}{data_option(data)}`.", ""]
    s, spec = found
    metric = spec.metric
    results = grid_results(s, spec)
    reference = next(iter(results))
    ref = [t.value for t in results[reference]]
    rows = [
        f"| variant | seeds | test {metric} (mean ± sd) | difference to the seed [95% interval] | "
        "first-layer \\|w\\| < 1e-3 | seconds per fit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    sentences = []
    comparisons = sum(1 for trials in results.values() if len(trials) > 1) - 1  # the seed's own is no comparison
    for variant, trials in results.items():
        values = [t.value for t in trials]
        if not values:
            rows.append(f"| {variant} | 0 | | | | |")
            continue
        near_zero = statistics.fmean(t.user_attrs["weights"]["near_zero"] for t in trials)
        seconds = statistics.fmean(t.user_attrs["seconds"] for t in trials)
        difference = ""
        if variant != reference and len(values) > 1 and len(ref) > 1:
            diff, low, high = (100 * x for x in welch(ref, values))
            difference = f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] points"
            sentences.append(f"- {verdict(variant, reference, ref, values, comparisons)}")
        rows.append(
            f"| {variant} | {len(values)} | {mean_sd(values)} | {difference} | {near_zero:.1%} | {seconds:.1f} |"
        )
    tag = study_name(name, data)
    curves_figure(results, tag).savefig(out / f"curves_{tag}.png", dpi=80)
    weights_figure(results, f"{tag}: weights of the tested network").savefig(out / f"weights_{tag}.png", dpi=80)
    noise = f" Seed noise: its standard deviation is {100 * statistics.stdev(ref):.2f} points." if len(ref) > 1 else ""
    return [
        heading,
        "",
        f"{produced(s, spec)} The seed's own settings are **{reference}**: every difference is taken to it.{noise}",
        "",
        *rows,
        "",
        *sentences,
        "",
        f"![{tag} loss curves](curves_{tag}.png)",
        "",
        f"![{tag} weight histograms](weights_{tag}.png)",
        "",
    ]


def confusion_section(storage: Any, data: str, out: Path) -> list[str]:
    """Q2 from the seed's network in the loss study: test confusion matrices summed over its seeds."""
    found = find(storage, study_name("loss", data))
    heading = ["## Q2: which items get confused?", ""]
    if found is None or not (trials := next(iter(grid_results(*found).values()))):
        return [*heading, f"Not run yet: `python -m fashion_lab.studies loss{data_option(data)}`.", ""]
    classes = list(getattr(fashion_lab, data.rsplit(".", 1)[-1]).classes)
    confmat = torch.tensor([t.user_attrs["confusion"] for t in trials]).sum(dim=0)
    confusion_matrix_figure(confmat, classes, f"test set, seed network, {len(trials)} seeds summed").save(
        out / "confusion_matrix.png"
    )
    accuracy = mean_sd([t.value for t in trials])
    return [
        *heading,
        f"The seed's network (loss study, {plural(len(trials), 'seed')}, test accuracy {accuracy}); rows are "
        "true classes, "
        "columns predictions, counts summed over the seeds' test sets.",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        *[f"- {line}" for line in most_confused(confmat, classes, k=6)],
        "",
    ]


def search_section(storage: Any, data: str, out: Path) -> list[str]:
    """The search: its best trials, Optuna's optimization history and parameter importances."""
    heading = ["## Search: the best Dense-only network", ""]
    found = find(storage, study_name(SEARCH, data))
    option = data_option(data)
    if found is None or not any(t.state == TrialState.COMPLETE for t in found[0].get_trials(deepcopy=False)):
        return [*heading, f"Not run yet: `python -m fashion_lab.studies search{option}`.", ""]
    s, spec = found
    trials = s.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    rows = [
        f"| trial | val {spec.metric} | test {spec.metric} | seconds | hidden | dropout | activation | "
        "optimizer | lr | schedule | weight decay | batch | smoothing | epochs |",
        "|---:|---:|---:|---:|---|---:|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for t in done[:8]:
        p, o, test = t.params, t.user_attrs["overrides"], t.user_attrs["test"][spec.metric]
        rows.append(
            f"| {t.number} | {t.value:.4f} | {test:.4f} | {t.user_attrs['seconds']:.0f} "
            f"| {o['model.hidden']} | {p['dropout']:.2f} | {p['activation']} | {p['optimizer']} | {p['lr']:.2g} "
            f"| {p['lr_schedule']} | {p['weight_decay']:.1g} | {p['batch_size']} | {p['label_smoothing']:.2f} "
            f"| {p['epochs']} |"
        )
    figures = optuna_figures(s, study_name(SEARCH, data), out)
    return [
        *heading,
        f"{produced(s, spec)} Trials: {counts['complete']} complete, {counts['pruned']} pruned (Lightning callback "
        f"reporting val/{spec.metric} each epoch to a median pruner), {counts['fail']} failed. Ranked by the best "
        "validation score; the test score is shown, never used to choose. Write the winner as a config: "
        f"`python -m fashion_lab.studies search{option} --write-config configs/search_best.yaml`.",
        "",
        *rows,
        "",
        *figures,
    ]


def optuna_figures(s: optuna.Study, tag: str, out: Path) -> list[str]:
    """Optuna's own matplotlib plots: optimization history, and parameter importances (PED-ANOVA: numpy only)."""
    import matplotlib.pyplot as plt

    lines = []
    plots = {
        "history": lambda: optuna.visualization.matplotlib.plot_optimization_history(s),
        "importances": lambda: optuna.visualization.matplotlib.plot_param_importances(
            s, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        ),
    }
    for kind, plot in plots.items():
        try:
            ax = plot()
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few or too similar trials
            lines += [f"({kind}: not drawn yet: {e})", ""]
            continue
        ax.figure.set_size_inches(8, 4.5)
        ax.figure.savefig(out / f"{kind}_{tag}.png", dpi=80, bbox_inches="tight")
        plt.close(ax.figure)
        lines += [f"![{tag} {kind}]({kind}_{tag}.png)", ""]
    return lines


def k49_section(storage: Any, out: Path) -> list[str]:
    """K49's studies (balanced accuracy), or how to get its files."""
    heading = ["## Homework: Kuzushiji-49", ""]
    names = [n for n in SECTIONS if find(storage, study_name(n, "K49DataModule"))]
    if not names and not find(storage, study_name(SEARCH, "K49DataModule")):
        mirror = fashion_lab.K49DataModule.mirrors[0]
        return [
            *heading,
            "No K49 study in this storage. The seed measured 0.7575 plain test accuracy; K49's 49 classes are "
            "imbalanced, so its studies report balanced accuracy (macro recall).",
            "",
            "Get the four files: `python -m fashion_lab.cli fit --config configs/k49.yaml` downloads them "
            f"(md5-checked) from {mirror} into `data/K49/raw/`, or download `k49-train-imgs.npz`, "
            "`k49-train-labels.npz`, `k49-test-imgs.npz` and `k49-test-labels.npz` from there into `data/`. Then "
            "`python -m fashion_lab.studies loss --data K49DataModule` (and activation, dropout, regularization, "
            "search) and this script again.",
            "",
        ]
    lines = [*heading, "The same studies on K49; the metric is balanced accuracy. The seed measured 0.7575 plain test "
             "accuracy.", ""]  # fmt: skip
    for name in names:
        lines += grid_section(storage, name, "K49DataModule", out, f"### K49: {SECTIONS[name]}")
    return [*lines, "### K49: search", *search_section(storage, "K49DataModule", out)[1:]]


def find(storage: Any, name: str) -> tuple[optuna.Study, StudyDefinition] | None:
    """The study and its definition, or None if the storage does not hold it."""
    if name not in optuna.get_all_study_names(storage):
        return None
    return load(storage, name)


def plural(n: int, one: str, many: str | None = None) -> str:
    """ "1 seed", "2 seeds"."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def data_option(data: str) -> str:
    """The study command's --data option, or nothing for the default Fashion-MNIST."""
    return "" if data == "FashionMNISTDataModule" else f" --data {data}"


def produced(s: optuna.Study, spec: StudyDefinition) -> str:
    """How the study was run and how long it took, from its trials' timestamps."""
    trials = [t for t in s.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start]
    if not trials:
        return ""
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    fit = sum(t.user_attrs.get("seconds", 0.0) for t in trials)
    workers = len({t.user_attrs.get("worker") for t in trials})
    seeds = f" --seeds {spec.seeds}" if isinstance(spec, GridStudy) else ""
    command = shlex.join(["python", "-m", "fashion_lab.studies", spec.study, *spec.fit_args]) + seeds
    return (
        f"Produced by `{command}`{data_option(spec.data)}: {plural(len(trials), 'trial')} by "
        f"{plural(workers, 'worker process', 'worker processes')} "
        f"in {wall / 60:.1f} min of wall time ({fit / 60:.1f} min of fits)."
    )


def header(url: str) -> list[str]:
    """What every number means, where it comes from, and question 1 (parameter counts, no training needed)."""
    shown = make_url(url).render_as_string(hide_password=True)
    storage = "" if url == DEFAULT_STORAGE else f" --storage {shown}"
    return [
        "# The seed's questions, answered by fashion_lab",
        "",
        "Every number below is a mean over seeds (each seed draws the initial weights, the dropout masks and the "
        "shuffle), with the difference to the seed tutorial's own settings and Welch's 95% interval: a difference "
        "whose interval holds 0 is seed noise, not a finding. Each trial is one `python -m fashion_lab.cli fit` "
        "(the seed's settings: 5 epochs, batch 32, Keras split 48,000 / 12,000, then the 10,000 test images) with "
        "one change; its TensorBoard run is in lightning_logs/<study>/trial_N/.",
        "",
        f"Storage: `{shown}`. Regenerate: `python scripts/reproduce_seed.py --workers 2{storage}` (runs what is "
        "missing, then writes this report). Machine: "
        f"{platform.machine()} with {os.cpu_count()} CPU cores; torch {torch.__version__}, "
        f"Lightning {lightning.__version__}, Optuna {optuna.__version__}.",
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
