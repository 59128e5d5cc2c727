"""TensorBoard's HPARAMS tab in a real browser: a small study's trials, served by `tensorboard --logdir` as a user
starts it, show their variant, seed and metric values in the tab's table view, to the digits TensorBoard prints them
with, as read from the trials' event files; and nothing is fetched from outside the machine."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import torch

from fashion_lab.callbacks import HP_METRICS
from fashion_lab.studies.command import main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.browser import chromium, free_port, outside_requests, screenshot, serve, wait_until
from tests.helpers.hparams_events import hparams_tab

# The loss grid at one seed (its 3 variants: 3 trials) on tiny synthetic MNIST, 1 epoch: about 10 s on 2 cores
STUDY = ["loss", "--seeds", "1", "--threads", "1", "--data", "MNISTDataModule", "--data.data_dir", "data"]
STUDY += ["--data.download", "false", "--trainer.max_epochs", "1"]
# The columns ticked in the tab's left pane: TensorBoard shows only the first five hyperparameters (by name:
# data.batch_size, data.data_dir, ...) and the first five metrics unless told otherwise
TRIAL_COLUMNS = ["trial.seed", "trial.variant"]
TENSORBOARD = Path(sys.executable).parent / "tensorboard"  # the console script, beside this Python
DASHBOARD = ("tf-hparams-dashboard", "tf-hparams-main")  # each inside the one before's shadow root
# The table's header and rows as shown: vaadin-grid draws its cells in its shadow root, each holding a <slot> that
# shows one <vaadin-grid-cell-content> of the light DOM (recycled rows are hidden, not removed)
READ_GRID = """
const grid = arguments[0];
const text = cell => (cell.querySelector('slot')?.assignedElements() ?? []).map(e => e.textContent.trim()).join(' ');
const rows = part => Array.from(grid.shadowRoot.querySelectorAll(part + ' tr'))
  .filter(tr => !tr.hidden).map(tr => Array.from(tr.children, text));
return [rows('thead')[0] ?? [], rows('tbody')];
"""


def to_precision(x: float, digits: int = 5) -> str:
    """JavaScript's x.toPrecision(digits): how the HPARAMS table prints a number (its prettyPrint). By hand, as no
    Python library formats numbers JavaScript's way: rounded half up from the exact binary value, exponential outside
    1e-6 <= |x| < 10**digits.

    >>> [to_precision(x) for x in (0.95312500, 0.0293841, 27.61034, 0.06, 32, 0, 9.999996, 0.125)]
    ['0.95313', '0.029384', '27.610', '0.060000', '32.000', '0.0000', '10.000', '0.12500']
    >>> to_precision(1.5e-7), to_precision(123456.0), to_precision(-0.5)
    ('1.5000e-7', '1.2346e+5', '-0.50000')
    """
    if x == 0:
        return f"{0:.{digits - 1}f}"
    exact = Decimal(x)
    exponent = exact.adjusted()
    rounded = exact.quantize(Decimal(1).scaleb(exponent - digits + 1), rounding=ROUND_HALF_UP)
    exponent = rounded.adjusted()  # 9.999996 rounds up to 10.000
    if -6 <= exponent < digits:
        return f"{rounded.quantize(Decimal(1).scaleb(exponent - digits + 1)):f}"
    mantissa = rounded.scaleb(-exponent).quantize(Decimal(1).scaleb(1 - digits))
    return f"{mantissa:f}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


@pytest.fixture(scope="module")
def study_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m fashion_lab.studies loss --seeds 1 ...` run in this process: the study's folder of trial runs."""
    folder = tmp_path_factory.mktemp("tensorboard_study")
    write_idx_set(folder / "data", n_train=320, n_test=100)
    cwd, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(folder)  # the study's default storage and runs: ./lightning_logs
    try:
        progress = io.StringIO()
        with contextlib.redirect_stdout(progress):
            assert main(STUDY) == 0, progress.getvalue()[-3000:]
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)  # the study set 1 for its worker
    return folder / "lightning_logs" / "loss-mnist"


def expected_rows(logs: Path) -> dict[str, dict[str, str]]:
    """Per trial run (its name is the table's Trial ID): its variant, seed and metrics, from its event files, as the
    table prints them."""
    rows = {}
    for run in sorted(logs.glob("trial_*")):
        params, metrics = hparams_tab(run)
        rows[run.name] = {"trial.seed": to_precision(params["trial.seed"]), "trial.variant": params["trial.variant"]}
        rows[run.name] |= {tag: to_precision(value) for tag, value in metrics.items()}
    return rows


def inside(element, *path: str):
    """The element found by following `path`, each CSS selector inside the shadow root of the one before."""
    for css in path:
        element = element.shadow_root.find_element("css selector", css)
    return element


def show_columns(pane, wanted: set[str]) -> None:
    """Tick exactly the `wanted` hyperparameters and metrics in the query pane, as a user clicks them."""
    for box in pane.shadow_root.find_elements("css selector", "paper-checkbox.hparam-checkbox, .metric-checkbox"):
        if (box.get_attribute("aria-checked") == "true") != (box.get_attribute("textContent").strip() in wanted):
            # the pane scrolls inside a shadow root, which chromedriver's own scrolling into view misses
            box.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
            box.click()


def widen_column(grid, header: str, pixels: int) -> None:
    """Drag the resize handle of the column headed `header` by `pixels`, as a user widens a column to read it."""
    from selenium.webdriver.common.action_chains import ActionChains

    for cell in grid.shadow_root.find_elements("css selector", "thead th"):
        if (
            grid.parent.execute_script(
                "return arguments[0].querySelector('slot')?.assignedElements()[0]?.textContent.trim()", cell
            )
            == header
        ):
            handle = cell.find_element("css selector", "[part~='resize-handle']")
            ActionChains(grid.parent).click_and_hold(handle).move_by_offset(pixels, 0).release().perform()
            return
    pytest.fail(f"no column {header!r} in the table")


def read_table(grid) -> dict[str, dict[str, str]]:
    """The table view's rows by Trial ID: {column header: the cell's text}."""
    header, rows = grid.parent.execute_script(READ_GRID, grid)
    return {row[0]: dict(zip(header[1:], row[1:], strict=False)) for row in rows if row and row[0]}


@pytest.mark.slow
def test_hparams_table_shows_the_trials(study_logs: Path, tmp_path: Path) -> None:
    expected = expected_rows(study_logs)
    assert len(expected) == 3 and set(next(iter(expected.values()))) == {*TRIAL_COLUMNS, *HP_METRICS}
    assert len({row["trial.variant"] for row in expected.values()}) == 3  # the rows differ: a mix-up shows
    port = free_port()
    command = [str(TENSORBOARD), "--logdir", str(study_logs), "--host", "127.0.0.1", "--port", str(port)]
    with chromium(width=2100) as browser, serve(command, tmp_path, port) as url:
        browser.get(f"{url}#hparams")
        main_pane = wait_until(lambda: inside(browser.find_element("css selector", DASHBOARD[0]), DASHBOARD[1]),
                               what="the HPARAMS tab")  # fmt: skip
        sessions = inside(main_pane, "tf-hparams-sessions-pane")
        tab = wait_until(lambda: [t for t in sessions.shadow_root.find_elements("css selector", "paper-tab")
                                  if t.text.strip().lower() == "table view"], what="the TABLE VIEW tab")  # fmt: skip
        tab[0].click()
        grid = inside(sessions, "tf-hparams-table-view", "vaadin-grid")
        # TensorBoard reads the event files in the background after it starts: the rows come when it has
        wait_until(lambda: len(read_table(grid)) == len(expected), what="a row per trial")
        show_columns(inside(main_pane, "tf-hparams-query-pane"), {*TRIAL_COLUMNS, *HP_METRICS})
        shown = wait_until(lambda: (t := read_table(grid)) and set(next(iter(t.values()))) >= set(HP_METRICS) and t,
                           what="the trial and metric columns")  # fmt: skip
        widen_column(grid, "trial.variant", 120)  # for the screenshot: "mse, raw integer label (the pitfall)"
        shot = screenshot(browser, "tensorboard_hparams", tmp_path)
        requests = outside_requests(browser)
    header = list(next(iter(shown.values())))
    assert header == ["Show Metrics", *TRIAL_COLUMNS, *HP_METRICS]  # hyperparameters by name, metrics as logged
    assert {trial: {k: v for k, v in row.items() if k != "Show Metrics"} for trial, row in shown.items()} == expected
    assert shot.stat().st_size > 20_000
    assert requests == []  # TensorBoard's page loads its fonts and scripts from this machine only
