"""Statistics over seeds: mean ± sd, Welch's interval of a difference, and the verdict sentence that counts its
table's comparisons (Bonferroni)."""

from __future__ import annotations

import math
import statistics


def mean_sd(values: list[float]) -> str:
    """ "0.8650 ± 0.0031" (sample standard deviation; "± n/a" from one value)."""
    sd = f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"
    return f"{statistics.fmean(values):.4f} ± {sd}"


def welch(reference: list[float], other: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(other) − mean(reference) and its `level` interval by Welch's t (unequal variances); 2+ values each.

    >>> [round(x, 3) for x in welch([0.86, 0.87, 0.865], [0.88, 0.89, 0.885])]
    [0.02, 0.009, 0.031]
    >>> [round(x, 3) for x in welch([0.86, 0.87, 0.865], [0.88, 0.89, 0.885], level=0.99)]
    [0.02, 0.001, 0.039]
    """
    from scipy.stats import t

    diff = statistics.fmean(other) - statistics.fmean(reference)
    va, vb = (statistics.variance(x) / len(x) for x in (reference, other))
    if va + vb == 0:  # identical values in both (e.g. the MSE pitfall's chance level): no spread to test
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(reference) - 1) + vb**2 / (len(other) - 1))
    half = float(t.ppf(1 - (1 - level) / 2, df)) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def verdict(name: str, reference: str, ref: list[float], values: list[float], comparisons: int = 1) -> str:
    """One plain sentence: the difference in accuracy points, its 95% interval, and whether it beats seed noise,
    also once all `comparisons` of its table are counted (Bonferroni: each interval at 1 − 0.05 / comparisons)."""
    if len(ref) < 2 or len(values) < 2:
        return f"{name}: needs 2 or more seeds on both sides for an interval."
    diff, low, high = (100 * x for x in welch(ref, values))
    interval = f"95% interval {low:+.2f} to {high:+.2f}"
    if not (low > 0 or high < 0):
        return f"{name} differs by {diff:+.2f} points ({interval}): the interval holds 0, so this is within seed noise."
    side = "better" if diff > 0 else "worse"
    found = f"{name} is {abs(diff):.2f} points {side} than {reference} ({interval})"
    if comparisons == 1:
        return f"{found}: larger than seed noise."
    level = 1 - 0.05 / comparisons
    _, low, high = (100 * x for x in welch(ref, values, level))
    if low > 0 or high < 0:
        return f"{found}: larger than seed noise, also with this table's {comparisons} comparisons counted."
    return (
        f"{found}: beyond seed noise on its own, but not once this table's {comparisons} comparisons are counted "
        f"(Bonferroni {level:.1%} interval {low:+.2f} to {high:+.2f}): a hint to re-check with more seeds, not a "
        "finding."
    )
