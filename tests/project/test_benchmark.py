"""The benchmark scripts run end to end (how fast is for the scripts to print, never for a test to assert)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.commands import run_command
from tests.helpers.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_benchmark_one_tiny_round(tmp_path: Path) -> None:
    cmd = [str(REPO / "scripts" / "benchmark.py"), "--repeats", "1", "--epochs", "1", "--no-k49"]
    result = run_command(cmd, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| (a) hand-written PyTorch loop |" in result.stdout
    for row in ("(b) `python -m fashion_lab.cli fit`", "(c) README library example", "(d) README library example"):
        ratio = result.stdout.split(f"| {row}")[1].split("|")[3]
        assert ratio.strip().endswith("×") and float(ratio.strip()[:-1]) > 0, row


def test_benchmark_data_prints_ratio(tmp_path: Path) -> None:
    result = run_command([str(REPO / "scripts" / "benchmark_data.py"), "--k49-size", "5000"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio (torchvision / ours)" in result.stdout and "K49-sized synthetic train epoch" in result.stdout


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="--against reads a commit with git archive")
def test_benchmark_against_a_commit(tmp_path: Path) -> None:
    cmd = [str(REPO / "scripts" / "benchmark.py"), "--against", "HEAD", "--repeats", "2", "--epochs", "1"]
    result = run_command(cmd, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| (")]
    labels = [row.split("|")[1].strip() for row in rows]
    assert labels[0] == "(a) `fit` at HEAD" and labels[1].startswith("(b) `fit` at ") and len(labels) == 3
    assert labels[2] == "(c) (b) without histograms, units image, graph" and rows[0].endswith("| 1.00× |")
    differences = [line for line in result.stdout.splitlines() if line.startswith("(b) - (")]
    assert len(differences) == 2, result.stdout
    for line in differences:  # "...: +0.12 ± 0.30 s a round (within noise: ±2.70 s; slower in 1 of 2 rounds)"
        mean, sd = line.split(": ", 1)[1].split(" s a round")[0].split(" ± ")
        assert abs(float(mean)) < 60 and float(sd) >= 0 and "noise: ±" in line and "of 2 rounds)" in line
    parts = result.stdout.split("The same, in one process, written and flushed: ")[1].splitlines()[0]
    assert [part.rsplit(" ", 2)[0] for part in parts.split(", ")] == ["graph", "histograms", "units image"]
    assert all(0 < float(part.rsplit(" ", 2)[1]) < 60 for part in parts.split(", "))
