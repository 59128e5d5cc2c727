"""The benchmark scripts run end to end (how fast is for the scripts to print, never for a test to assert)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_data,
    pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist"),
]


def test_benchmark_one_tiny_round(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--repeats", "1", "--epochs", "1", "--no-k49"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| (a) hand-written PyTorch loop |" in result.stdout
    ratio = result.stdout.split("| (b) `python -m fashion_lab.cli fit` |")[1].split("|")[2]
    assert ratio.strip().endswith("×") and float(ratio.strip()[:-1]) > 0


def test_benchmark_data_prints_ratio(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark_data.py"), "--k49-size", "5000"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio (torchvision / ours)" in result.stdout and "K49-sized synthetic train epoch" in result.stdout
