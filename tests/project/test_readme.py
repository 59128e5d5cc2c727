"""The README's promises: its import example runs, and scripts/reproduce_seed.py --quick writes the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.commands import run_command
from tests.helpers.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return re.search(r"<!-- example: .*? -->\n```python\n(.*?)```", readme, re.S).group(1)


def test_readme_example_runs(tmp_path: Path) -> None:
    code = readme_example()
    assert "from fashion_lab import" in code and len(code.splitlines()) <= 12
    result = run_command([str(REPO / "scripts" / "library_example.py")], tmp_path)  # runs the README's block
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) >= 0.80
    assert list((tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))


def test_reproduce_seed_quick(tmp_path: Path) -> None:
    """--quick runs the grid studies (2 seeds, 1 epoch on a fifth of the batches), then the report from them."""
    out = tmp_path / "reports"
    result = run_command(
        [str(REPO / "scripts" / "reproduce_seed.py"), "--quick", "--workers", "2", "--out", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "seed_study.md").read_text(encoding="utf-8")
    assert "| dense_1 (Dense) | (None, 10) | 1,290 | 128 inputs × 10 units + 10 biases |" in report
    assert "**101,770**" in report
    for section in (
        "The tutorial's printed numbers",
        "Q2: which",
        "Q7 loss",
        "Q5 regularization",
        "Q6 dropout",
        "Q4 activation",
        "Search: the best Dense-only network",
        "Homework: Kuzushiji-49",
    ):
        assert f"## {section}" in report
    pitfall = re.search(r"\| mse, raw integer label \(the pitfall\) \| 2 \| ([0-9.]+) ± ", report).group(1)
    seed = re.search(r"\| cross_entropy \(seed\) \| 2 \| ([0-9.]+) ± ", report).group(1)
    assert float(pitfall) < 0.2 < 0.7 < float(seed)
    assert "- mse, raw integer label (the pitfall) is " in report and "points worse than cross_entropy (seed)" in report
    assert re.search(r"- \d+ × [\w/ -]+ predicted as [\w/ -]+", report)
    assert "Not run yet" not in report.split("## Search")[0]  # every grid study ran
    for png in ("confusion_matrix", "curves_loss-fashionmnist", "weights_regularization-fashionmnist"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
