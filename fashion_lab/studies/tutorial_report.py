"""The report's section "The tutorial's printed numbers": each number the tutorial printed, beside fashion_lab's
runs of the tutorial's exact calls (the "tutorial" study, tested unscaled as printed and scaled) and real Keras'
(tests/fixtures/keras_tutorial_runs.json, from scripts/keras_tutorial_as_printed.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from fashion_lab.studies.definition import study_name
from fashion_lab.studies.report import find, produced
from fashion_lab.studies.results import grid_results

CE, MSE = "cross_entropy, as printed", "mse on integer labels, as printed"
# the tutorial's four confusion counts: (name as printed, true class, predicted class, count)
PAIRS = {
    "tshirt_to_shirt": ("T-shirt/top (0) → Shirt (6)", 0, 6, 110),
    "shirt_to_tshirt": ("Shirt (6) → T-shirt/top (0)", 6, 0, 117),
    "shirt_to_pullover": ("Shirt (6) → Pullover (2)", 6, 2, 152),
    "coat_to_pullover": ('Coat (4) → Pullover (2), printed as "2 (Trouser)"', 4, 2, 154),
}
# (row, variant, metric, the tutorial's printed value)
PRINTED = [
    ("first program, loss (cross-entropy)", CE, "loss", 54.680458068847656),
    ("first program, accuracy", CE, "acc", 0.8521999716758728),
    ("second program, loss (MSE on integer labels)", MSE, "loss", 27.61042594909668),
    ("second program, accuracy", MSE, "acc", 0.10019999742507935),
]


def spread(values: list[float], digits: int) -> str:
    """ "55.72 ± 4.52 [48.24, 61.76]": mean ± sample sd [min, max]."""
    mean, sd = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.{digits}f} ± {sd:.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def inside(value: float, values: list[float]) -> str:
    """The rule: inside the seeds' spread if within their min–max; the distance in sds says how far otherwise."""
    if min(values) <= value <= max(values):
        return "inside"
    sd = statistics.stdev(values)
    return f"outside ({abs(value - statistics.fmean(values)) / sd:.1f} sd from the mean)" if sd else "outside"


def keras_runs(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["runs"] if path.exists() else []


def keras_values(runs: list[dict], loss: str, metric: str, scaled: bool) -> dict[str, list[float]]:
    """Per Keras version, the seeded runs' evaluate values ("tf.keras 2.15.0": [...])."""
    index, key = (0 if metric == "loss" else 1), "evaluate_scaled" if scaled else "evaluate_unscaled"
    return {version: [run[key][index] for run in rs] for version, rs in keras_by_version(runs, loss, key).items()}


def keras_cell(runs: list[dict], variant: str, metric: str, digits: int) -> str:
    loss = "sce" if variant == CE else "mse"
    found = keras_values(runs, loss, metric, scaled=False)
    cells = [f"{name}: {spread(v, digits)} ({len(v)} seeds)" for name, v in sorted(found.items())]
    if variant == MSE:
        cells.append("Keras 3.15.1: fails (`Dimensions must be equal, but are 60 and 10`)")
    return "; ".join(cells) or "n/a"


def tutorial_section(storage: Any, keras_path: Path) -> list[str]:
    """The tutorial's printed numbers, reproduced and explained."""
    heading = ["## The tutorial's printed numbers", ""]
    found = find(storage, study_name("tutorial", "FashionMNISTDataModule"))
    if found is None:
        return [*heading, "Not run yet: `python -m fashion_lab.studies tutorial --seeds 10`.", ""]
    s, spec = found
    results = grid_results(s, spec)
    if not results[CE] or not results[MSE]:
        return [*heading, "The tutorial study has no completed trial of each variant yet: run it again.", ""]
    runs = keras_runs(keras_path)
    return [
        *heading,
        *schedule_text(),
        produced(s, spec),
        "",
        *printed_table(results, runs),
        "",
        *verdicts(results),
        "",
        *why_cross_entropy(results[CE], runs),
        *why_mse(results[MSE], runs),
        *confusion_text(results[CE], runs),
        *k49_text(),
    ]


def schedule_text() -> list[str]:
    return [
        "The tutorial's first program is `model.fit(x_train_n, y_train, epochs=5, validation_split=0.2, "
        "steps_per_epoch=800)` then `model.evaluate(x_test, y_test)`; its second, the same with `loss='mse'`. "
        "What Keras does with exactly these calls, read in its source (Keras 3.15.1 on TensorFlow 2.21.0 = K3, "
        "tf.keras 2.15.0 on TensorFlow 2.15.1 = K2) and confirmed by running them:",
        "",
        "- **Batch 60, not 32.** With `steps_per_epoch` and no `batch_size`, Keras computes "
        "`batch_size = int(math.ceil(num_samples / steps)) if steps else 32` (K3 "
        "`trainers/data_adapters/array_data_adapter.py:85-90`, K2 `engine/data_adapter.py:271-275`): "
        "ceil(48,000 / 800) = 60, so an epoch is 800 optimizer steps = one full pass, reshuffled each epoch; "
        "4,000 steps in all (counted by a callback and `optimizer.iterations` in every real run).",
        "- **Validation: the last 12,000 rows, unshuffled** (`split_at = int(math.floor(batch_dim * (1.0 - "
        "validation_split)))`, K3 `array_slicing.py:497`, K2 `data_adapter.py:1792`), at batch 32, as `evaluate`.",
        "- **`evaluate(x_test, ...)` gets the unscaled 0..255 images**: the tutorial scaled `x_test_n` but "
        "evaluated `x_test`. fashion_lab's `--data.unscaled_test_images true` does the same on purpose.",
        "- **MSE on the integer labels broadcasts.** tf.keras 2 expands y (N,) to (N, 1) before the loss "
        "(`match_dtype_and_rank`, K2 `engine/compile_utils.py:843-846`), and `mean((y_pred - y_true)**2, "
        "axis=-1)` broadcasts it against the (N, 10) softmax: per image mean_k (y − p_k)². Keras 3 does not expand "
        "(K3 `losses/loss.py:131-136`) and stops with `Dimensions must be equal, but are 60 and 10`. "
        "fashion_lab's `one_hot_targets: false` is tf.keras 2's broadcast (tests/studies/test_tutorial.py checks it "
        "against the closed form).",
        "- **`metrics=['accuracy']` is sparse categorical accuracy** for both losses (argmax == integer label; "
        "K3 `trainers/compile_utils.py:40-74`, K2 `engine/compile_utils.py:664-683`).",
        "- **Cross-entropy comes from the logits**: Keras' softmax output keeps them (`output._keras_logits`, K3 "
        "`backend/tensorflow/nn.py:162-173`, K2 `backend.py:5455-5457`), and the loss uses them "
        "(`_get_logits`, K3 `nn.py:1262-1294`); it clips probabilities at 1e-7 only when there are no logits. "
        "fashion_lab's losses take logits too.",
        "",
        "fashion_lab runs both programs as `python -m fashion_lab.cli fit --config configs/tutorial_as_printed.yaml` "
        "and `... configs/tutorial_as_printed_mse.yaml` (batch 60, 800 steps an epoch, the final weights tested on "
        "the unscaled images); the study below runs them over seeds and tests each trial's weights on x / 255 "
        "as well. The real-Keras column is scripts/keras_tutorial_as_printed.py (seeds 0-2 per version, "
        "tests/fixtures/keras_tutorial_runs.json). A printed value is **inside** the seed spread when it lies "
        "within the min–max of fashion_lab's seeds.",
        "",
    ]


def metric_values(trials: list[FrozenTrial], metric: str, scaled: bool) -> list[float]:
    return [t.user_attrs["test_scaled" if scaled else "test"][metric] for t in trials]


def shown_digits(variant: str, metric: str) -> int:
    """Decimals shown: the MSE loss differs in the 5th, the unscaled cross-entropy in the units."""
    return 5 if variant == MSE and metric == "loss" else (2 if metric == "loss" else 4)


def printed_table(results: dict[str, list[FrozenTrial]], runs: list[dict]) -> list[str]:
    rows = [
        "| printed | tutorial | fashion_lab, the tutorial's way (unscaled test): mean ± sd [min, max] | "
        "the same weights, test scaled (x / 255) | tutorial inside the seed spread? | real Keras, unscaled test |",
        "|---|---:|---:|---:|---|---|",
    ]
    for label, variant, metric, value in PRINTED:
        digits = shown_digits(variant, metric)
        unscaled = metric_values(results[variant], metric, scaled=False)
        scaled = metric_values(results[variant], metric, scaled=True)
        rows.append(
            f"| {label} | {value:.{digits}f} | {spread(unscaled, digits)} ({len(unscaled)} seeds) | "
            f"{spread(scaled, max(digits, 4))} | {inside(value, unscaled)} | "
            f"{keras_cell(runs, variant, metric, digits)} |"
        )
    return rows


def verdicts(results: dict[str, list[FrozenTrial]]) -> list[str]:
    """One sentence per printed value: inside or outside fashion_lab's seed spread, and how far from the mean."""
    lines = []
    for label, variant, metric, value in PRINTED:
        values, digits = metric_values(results[variant], metric, scaled=False), shown_digits(variant, metric)
        mean, sd = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        where = "inside" if min(values) <= value <= max(values) else "outside"
        distance = f"{abs(value - mean) / sd:.1f} sd" if sd else "no spread"
        lines.append(
            f"- {label[0].upper() + label[1:]}: the printed {value:.{digits}f} is {where} the {len(values)} seeds' "
            f"range [{min(values):.{digits}f}, {max(values):.{digits}f}], {distance} "
            f"{'below' if value < mean else 'above'} their mean{': reproduced' if where == 'inside' else ''}."
        )
    return lines


def why_cross_entropy(trials: list[FrozenTrial], runs: list[dict]) -> list[str]:
    loss, acc = (statistics.fmean(metric_values(trials, m, scaled=False)) for m in ("loss", "acc"))
    scaled_loss, scaled_acc = (statistics.fmean(metric_values(trials, m, scaled=True)) for m in ("loss", "acc"))
    stats = [r for r in runs if r["loss"] == "sce" and "logit_abs_max_mean" in r and r["seed"] is not None]
    logits = ""
    if stats:
        big = statistics.fmean(r["logit_abs_max_mean"]["unscaled"] for r in stats)
        small = statistics.fmean(r["logit_abs_max_mean"]["scaled"] for r in stats)
        clipped = statistics.fmean(r["ce_from_clipped_probs_unscaled"] for r in stats)
        logits = (
            f" In the real Keras runs the largest logit of an image is {small:.1f} on average on x / 255 and "
            f"{big:,.0f} on 0..255; the softmax of such logits is exactly 1.0 in float32 for ~98% of the images. "
            f"Had the loss used probabilities clipped at 1e-7, it could not exceed −log(1e-7) = 16.1 per image and "
            f"would average {clipped:.2f}: the 54.68 is only possible because Keras (and fashion_lab) use the logits."
        )
    return [
        "**Why 54.68.** The network was trained on x / 255 in [0, 1]; `evaluate(x_test)` feeds it 0..255, every "
        "input multiplied by 255. Dense → ReLU → Dense is linear in its input apart from the biases, so the logits "
        "grow about 255× while their order mostly survives: accuracy drops only from "
        f"{scaled_acc:.4f} (scaled) to {acc:.4f} (unscaled), but the softmax saturates. A correct image then costs "
        "≈ 0, and a wrong one costs its logit gap, z_predicted − z_true, hundreds of units. fashion_lab's mean "
        f"test loss of {loss:.2f} over an error rate of {1 - acc:.1%} means a wrong image costs "
        f"{loss / (1 - acc):.0f} on average (scaled: {scaled_loss:.4f}).{logits} The loss on unscaled images "
        "swings a lot from seed to seed because it is a mean of a few hundred large gaps.",
        "",
    ]


def why_mse(trials: list[FrozenTrial], runs: list[dict]) -> list[str]:
    loss = statistics.fmean(metric_values(trials, "loss", scaled=False))
    scaled = statistics.fmean(metric_values(trials, "loss", scaled=True))
    return [
        "**Why 27.61.** For any probability vector p, mean_k (y − p_k)² = y² − 0.2·y + Σ_k p_k² / 10. The test "
        "set has 1,000 images of each label 0..9, so E[y²] = 28.5 and E[y] = 4.5: the loss is 27.6 + E[Σp²] / 10, "
        "between 27.61 (a uniform softmax, Σp² = 0.1) and 27.70 (a saturated one). The label only adds a constant, "
        "and Σ_k (y − p_k)² is smallest at the uniform p whatever y is, so MSE training on integer labels "
        "drives every output to ≈ 1/10: the printed 27.61043 means E[Σp²] = 0.1043. fashion_lab's runs give "
        f"{loss:.5f} (E[Σp²] = {10 * (loss - 27.6):.4f}) unscaled and {scaled:.5f} scaled. The accuracy of "
        "≈ 0.10 is the one class the nearly uniform softmax's argmax happens to favour for most images (1,000 of "
        "10,000 are of any one class).",
        "",
    ]


def confusion_text(trials: list[FrozenTrial], runs: list[dict]) -> list[str]:
    """The four printed counts beside fashion_lab's (per seed) and real Keras'."""
    seeds = ", ".join(str(t.params["seed"]) for t in trials)
    rows = [
        "**The confusion counts.** The tutorial computed them with `mdoel_load.predict(x_test_n)`: scaled test "
        'images (from a loaded model, perhaps not this run\'s). It also names class 2 "Trouser" in "154 Coat → 2 '
        '(Trouser)"; class 2 is Pullover (Trouser is 1). They move a lot from seed to seed, as the '
        "Shirt / T-shirt / Pullover / Coat boundaries do.",
        "",
        f"| true → predicted | tutorial | fashion_lab scaled, seeds {seeds} | mean | fashion_lab unscaled, mean | "
        "real Keras scaled (per seed) | inside? |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for key, (name, true, pred, printed) in PAIRS.items():
        scaled = [t.user_attrs["confusion_scaled"][true][pred] for t in trials]
        unscaled = [t.user_attrs["confusion"][true][pred] for t in trials]
        keras = "; ".join(
            f"{v}: {', '.join(str(r['confusion_scaled'][key]) for r in rs)}"
            for v, rs in keras_by_version(runs, "sce", "confusion_scaled").items()
        )
        rows.append(
            f"| {name} | {printed} | {', '.join(map(str, scaled))} | {statistics.fmean(scaled):.0f} | "
            f"{statistics.fmean(unscaled):.0f} | {keras or 'n/a'} | {inside(printed, scaled)} |"
        )
    outside = [PAIRS[k][0] for k in PAIRS if not inside_counts(trials, k)]
    note = (
        f"Outside fashion_lab's seeds: {', '.join(outside)}; still within the spread of real Keras' few runs or "
        "near it, and the tutorial's counts came from a model loaded from elsewhere, so no more is read into them."
        if outside
        else "All four printed counts lie within fashion_lab's seeds."
    )
    return [*rows, "", note, ""]


def inside_counts(trials: list[FrozenTrial], key: str) -> bool:
    _, true, pred, printed = PAIRS[key]
    counts = [t.user_attrs["confusion_scaled"][true][pred] for t in trials]
    return min(counts) <= printed <= max(counts)


def keras_by_version(runs: list[dict], loss: str, key: str) -> dict[str, list[dict]]:
    """The seeded runs of `loss` that hold `key`, by Keras version as the report names it ("tf.keras 2.15.0",
    "Keras 3.15.1")."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        if run["loss"] == loss and run["seed"] is not None and key in run:
            out.setdefault(("tf.keras " if run["keras"].startswith("2") else "Keras ") + run["keras"], []).append(run)
    return out


def k49_text() -> list[str]:
    return [
        "**Kuzushiji-49.** The tutorial's K49 program is the first one with `Dense(49)`, `fit(X_train_n, y_train, "
        "epochs=5, validation_split=0.2)` (no `steps_per_epoch`: batch 32) and a *scaled* `evaluate(X_test_n, "
        "y_test)`, printed as [0.9463, 0.7575]. In fashion_lab: `python -m fashion_lab.cli fit --config "
        "configs/k49.yaml` (its `Test (...)` line is that evaluate), then `python -m fashion_lab.cli predict "
        "--ckpt_path lightning_logs/version_N/checkpoints/last.ckpt`, which prints the first "
        '20 predictions and labels as the tutorial\'s `print("Predict:", pre[0:20]); print("Actual:", '
        "y_test[0:20])` did, as lists:",
        "",
        "```",
        "Predict: [19, 4, 10, 3, 26, 12, 25, 9, 24, 8, 19, 5, 12, 46, 28, 4, 9, 10, 7, 13]",
        "Actual:  [19, 23, 10, 31, 26, 12, 24, 9, 24, 8, 19, 5, 12, 46, 28, 4, 9, 10, 18, 13]",
        "```",
        "",
        "(the tutorial's own numbers, in fashion_lab's format: the K49 files are not on the machine this report "
        "was made on, so no K49 run is reported here; `configs/k49.yaml` downloads them.)",
        "",
    ]
