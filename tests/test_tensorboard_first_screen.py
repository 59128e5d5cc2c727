"""TensorBoard's first screen in a real browser, as a learner opens it after `fit`: `tensorboard --logdir
lightning_logs`, its default dashboard (Time Series) in Debian's headless Chromium. The first two cards are Keras'
`epoch_accuracy` and `epoch_loss`, and each draws a training and a validation line.

`FASHION_LAB_SCREENSHOTS=reports python -m pytest tests/test_tensorboard_first_screen.py -m real_data` rewrites the
README's reports/tensorboard_first_screen.png, from a real seed `fit`."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_lab.cli import cli_main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.browser import SCREENSHOTS, chromium, free_port, outside_requests, serve, wait_until
from tests.helpers.commands import QUIET, SYNTHETIC

TENSORBOARD = Path(sys.executable).parent / "tensorboard"  # the console script, beside this Python
RUNS = {"train": "version_0/train", "validation": "version_0/validation"}
# Each card's data table: a row per run drawn in its chart, with the run's colour swatch
READ_CARDS = """
return Array.from(document.querySelectorAll('metrics-card-groups card-view'), card => [
  card.querySelector('.heading .name')?.textContent.trim() ?? '',
  Array.from(card.querySelectorAll('tb-data-table-content-row'), row => [
    row.querySelector('.row-circle span')?.style.backgroundColor ?? '',
    Array.from(row.querySelectorAll('tb-data-table-content-cell'), c => c.textContent.trim()).filter(t => t)[0] ?? '',
  ]),
]);
"""

SCROLL_BACK = "for (let e = arguments[0]; e; e = e.parentElement) e.scrollTop = 0;"


def fit(folder: Path, args: list[str]) -> Path:
    """A CLI `fit` (with its test) run in `folder`, as a user runs it: its lightning_logs."""
    quiet = ["--trainer.enable_progress_bar", "false"]
    cli_main(["fit", *args, *quiet, "--trainer.logger.init_args.save_dir", str(folder)])
    return folder / "lightning_logs"


def drawn(canvas_png: bytes, colour: tuple[int, int, int]) -> int:
    """How many pixels of the chart are the run's colour (its line; anti-aliased edges a little off)."""
    pixels = np.asarray(Image.open(io.BytesIO(canvas_png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - colour).sum(axis=2) < 30).sum())


def rgb(css: str) -> tuple[int, int, int]:
    """'rgb(229, 37, 146)' -> (229, 37, 146)."""
    return tuple(int(v) for v in css.removeprefix("rgb(").removesuffix(")").split(","))


def first_screen(logs: Path, tmp_path: Path, name: str) -> list[tuple[str, dict[str, int]]]:
    """Serve `logs`, open TensorBoard's default dashboard and return its first two cards: (tag, {run: pixels of
    the run's colour in the chart}); the first screen is saved as `name`.png."""
    port = free_port()
    command = [str(TENSORBOARD), "--logdir", str(logs), "--host", "127.0.0.1", "--port", str(port)]
    # a large screen, 1400 × 1300: the first two cards both show, one above the other, as TensorBoard stacks groups
    with chromium(width=1400, height=1300) as browser, serve(command, tmp_path, port) as url:
        browser.get(url)  # no #fragment: the dashboard TensorBoard opens with
        # TensorBoard reads the event files in the background: the tables fill when it has
        cards = wait_until(
            lambda: (c := browser.execute_script(READ_CARDS)) and len(c) >= 2 and all(len(c[i][1]) >= 2 for i in (0, 1))
            and c, what="the first two cards with their runs",
        )  # fmt: skip
        assert "timeseries" in browser.current_url
        elements = browser.find_elements("css selector", "metrics-card-groups card-view")[:2]
        chart = lambda card: card.find_element("css selector", "line-chart canvas").screenshot_as_png  # noqa: E731
        # the charts draw after their tables fill: wait for both runs' colours in both
        charts = wait_until(
            lambda: (shots := [chart(card) for card in elements])
            and all(drawn(shot, rgb(colour)) for shot, (_, rows) in zip(shots, cards[:2], strict=True)
                    for colour, _ in rows) and shots, what="the lines in the first two charts",
        )  # fmt: skip
        browser.execute_script(SCROLL_BACK, elements[0])  # an element's screenshot scrolled the page
        target = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
        target.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(target / f"{name}.png"))  # the first screen only, as the learner sees it
        assert outside_requests(browser) == []
    return [
        (tag, {run: drawn(chart, rgb(colour)) for colour, run in rows})
        for (tag, rows), chart in zip(cards[:2], charts, strict=True)
    ]


def check(cards: list[tuple[str, dict[str, int]]]) -> None:
    assert [tag for tag, _ in cards] == ["epoch_accuracy", "epoch_loss"]  # TensorBoard sorts cards by tag
    for tag, lines in cards:
        assert set(lines) == set(RUNS.values()), tag  # training and validation, nothing else
        assert all(pixels >= 30 for pixels in lines.values()), (tag, lines)  # each run's line is drawn


@pytest.mark.slow
def test_first_cards_overlay_training_and_validation(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "data", n_train=320, n_test=100)
    data = [a if a != "data" else str(tmp_path / "data") for a in SYNTHETIC]
    logs = fit(tmp_path, [*data, *QUIET[2:], "--trainer.max_epochs", "3"])
    check(first_screen(logs, tmp_path, "tensorboard_first_screen_synthetic"))


@pytest.mark.slow
@pytest.mark.real_data
def test_the_seeds_first_screen(tmp_path: Path) -> None:
    """The seed's own `fit` on real Fashion-MNIST (5 epochs): the README's screenshot."""
    check(first_screen(fit(tmp_path, []), tmp_path, "tensorboard_first_screen"))
    shot = Path(SCREENSHOTS or tmp_path) / "tensorboard_first_screen.png"
    assert shot.stat().st_size > 20_000
