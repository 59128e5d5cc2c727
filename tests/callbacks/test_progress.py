"""The Keras console (fashion_lab.callbacks.progress): Keras 3's Progbar lines, shortened to the terminal, for fit,
validate, test and predict; the seed's `fit` in a pseudo-terminal at 80 and 120 columns, rendered by a
terminal emulator (pyte)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import lightning as L
import pyte
import pytest

from fashion_lab import KerasProgressBar, MLPClassifier
from fashion_lab.callbacks.progress import display_of, plain_line, progress_line, visible_length
from fashion_lab.cli import cli_main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import SYNTHETIC, run_cli
from tests.helpers.paths import REPO
from tests.helpers.trainer import make_trainer

# Keras 3.15's own lines for the seed (the measurement): the terminal's and, without one, verbose=2's
KERAS_LINE = (
    "1500/1500 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step"
    " - accuracy: 0.8567 - loss: 0.3978 - val_accuracy: 0.8576 - val_loss: 0.3857"
)
KERAS_PLAIN = "1500/1500 - 2s - 1ms/step - accuracy: 0.8567 - loss: 0.3978 - val_accuracy: 0.8576 - val_loss: 0.3857"
SEED_METRICS = [("accuracy", 0.85672), ("loss", 0.39781), ("val_accuracy", 0.85761), ("val_loss", 0.38572)]
NUMBER = r"\d\.\d{4}"
METRIC = rf"(?:val_)?(?:accuracy|acc|loss): {NUMBER}"  # one whole metric, as Keras prints it
SCREENSHOTS = os.environ.get("FASHION_LAB_SCREENSHOTS")  # =reports: rewrite reports/console_fit.txt


def seed_line(width: int | None = None, colour: bool = False) -> str:
    return progress_line(1500, 1500, "2s", 0.0012, SEED_METRICS, width, colour)


def test_the_line_is_keras_line() -> None:
    assert seed_line() == KERAS_LINE
    assert plain_line(1500, 1500, 2.3, 0.0012, SEED_METRICS) == KERAS_PLAIN
    # Keras' escape codes: bold count and time, green steps done, white steps left; none of them takes a column
    running = progress_line(24, 1500, "5s", 0.0031, [])
    assert running == "\x1b[1m  24/1500\x1b[0m \x1b[37m" + "━" * 20 + "\x1b[0m \x1b[1m5s\x1b[0m 3ms/step"
    half = progress_line(750, 1500, "1s", 0.0012, [])
    assert "\x1b[32m" + "━" * 10 + "\x1b[0m\x1b[37m" + "━" * 10 + "\x1b[0m" in half
    assert visible_length(half) == len(" 750/1500 ") + 20 + len(" 1s 1ms/step")


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (118, KERAS_LINE),  # 120 columns: the whole line
        (97, KERAS_LINE.replace(" ━━━━━━━━━━━━━━━━━━━━", "")),  # the bar goes first
        (87, "1500/1500 2s 1ms/step - acc: 0.8567 - loss: 0.3978 - val_acc: 0.8576 - val_loss: 0.3857"),
        (79, "1500/1500 2s - acc: 0.8567 - loss: 0.3978 - val_acc: 0.8576 - val_loss: 0.3857"),  # 80 columns
        (75, "1500/1500 - acc: 0.8567 - loss: 0.3978 - val_acc: 0.8576 - val_loss: 0.3857"),
        (74, "1500/1500 - acc: 0.8567 - loss: 0.3978 - val_acc: 0.8576"),  # then whole metrics, from the end
        (20, "1500/1500"),
    ],
)
def test_a_line_that_does_not_fit_drops_whole_parts(width: int, expected: str) -> None:
    line = seed_line(width)
    assert line == expected and len(line) <= width
    assert visible_length(seed_line(width, colour=True)) == len(line)


def test_time_units_are_keras() -> None:
    assert plain_line(313, 313, 0.4, 0.0000871, []) == "313/313 - 0s - 87us/step"
    assert plain_line(7, 7, 21.0, 3.2, [("loss", 0.0004)]) == "7/7 - 21s - 3s/step - loss: 4.0000e-04"
    assert progress_line(7, None, "3s", 0.5, []) == "\x1b[1m      7/Unknown\x1b[0m \x1b[1m3s\x1b[0m 500ms/step"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def notebook_stream() -> io.StringIO:
    """A stand-in for a Jupyter kernel's sys.stdout (ipykernel.iostream.OutStream)."""
    return type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})()


def test_what_each_stream_gets() -> None:
    assert [display_of(s) for s in (Terminal(), io.StringIO(), notebook_stream())] == ["terminal", "plain", "notebook"]


def test_a_notebook_gets_the_whole_line_redrawn(tmp_path: Path, fashion, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jupyter redraws a line on a carriage return and renders the colours, but has no width: nothing is dropped."""
    notebook = notebook_stream()
    monkeypatch.setattr(sys, "stdout", notebook)
    monkeypatch.setenv("COLUMNS", "40")  # a kernel's terminal size is meaningless: not applied
    fit_with_bar(tmp_path, fashion, epochs=1)
    out = notebook.getvalue()
    assert out.startswith("\r") and "\x1b[32m" in out and out.endswith("\n")
    (line,) = render(out.replace("\n", "\r\n"), 200)
    pattern = rf"21/21 ━{{20}} \d+s \d+(?:s|ms|us)/step - accuracy: {NUMBER} - loss: {NUMBER}"
    pattern += rf" - val_accuracy: {NUMBER} - val_loss: {NUMBER}"
    assert re.fullmatch(pattern, line), line


def fit_with_bar(tmp_path: Path, fashion, epochs: int = 2, **trainer) -> tuple[L.Trainer, MLPClassifier]:
    """A CPU fit on the synthetic Fashion-MNIST: 512 training images, batch 25 in lists of 4: 21 optimizer steps."""
    dm = fashion(batch_size=25, steps_per_execution=4)
    model = MLPClassifier(num_classes=10)
    fit = make_trainer(tmp_path, max_epochs=epochs, enable_progress_bar=True, callbacks=[KerasProgressBar()], **trainer)
    fit.fit(model, datamodule=dm)
    return fit, model


def test_piped_fit_prints_keras_verbose_2(tmp_path: Path, fashion, capsys: pytest.CaptureFixture) -> None:
    trainer, _ = fit_with_bar(tmp_path, fashion)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines[0::2] == ["Epoch 1/2", "Epoch 2/2"] and len(lines) == 4
    # 21 optimizer steps: 5 lists of 4 mini-batches and a last list of one
    pattern = (
        r"21/21 - \d+s - \d+(?:s|ms|us)/step - accuracy: (\S+) - loss: (\S+) - val_accuracy: (\S+) - val_loss: (\S+)"
    )
    match = re.fullmatch(pattern, lines[3])
    assert match, lines[3]
    logged = trainer.callback_metrics
    for value, key in zip(match.groups(), ("train/acc", "train/loss", "val/acc", "val/loss"), strict=True):
        assert value == f"{float(logged[key]):.4f}"
    assert re.fullmatch(pattern, lines[1]) and lines[1] != lines[3]  # each epoch's own numbers


def render(output: bytes | str, columns: int, rows: int = 400) -> list[str]:
    """The screen a terminal of `columns` shows for `output`, without trailing blanks and empty last rows."""
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(output if isinstance(output, bytes) else output.encode())
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_terminal_fit_redraws_one_line_per_epoch(
    tmp_path: Path, fashion, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "80")
    bar = KerasProgressBar(interval=0)  # every list redraws
    trainer = make_trainer(tmp_path, max_epochs=2, enable_progress_bar=True, callbacks=[bar])
    trainer.fit(MLPClassifier(num_classes=10), datamodule=fashion(batch_size=25, steps_per_execution=4))
    out = terminal.getvalue()
    assert out.count("\r") > 10 and "\x1b[32m" in out  # redrawn in place, in Keras' colours
    screen = render(out.replace("\n", "\r\n"), 80)  # a terminal's driver starts each new line at column 0
    assert screen[0::2] == ["Epoch 1/2", "Epoch 2/2"] and len(screen) == 4
    for line in screen[1::2]:  # 80 columns: the bar and the time per step give way to the four metrics
        assert re.fullmatch(r"21/21 \d+s - acc: \S+ - loss: \S+ - val_acc: \S+ - val_loss: \S+", line), line


def test_validate_test_and_predict_print_keras_evaluate_lines(
    tmp_path: Path, fashion, capsys: pytest.CaptureFixture
) -> None:
    trainer, model = fit_with_bar(tmp_path, fashion, epochs=1)
    capsys.readouterr()
    dm = fashion(batch_size=25, eval_batch_size=50)
    for stage, run in (("val", trainer.validate), ("test", trainer.test)):
        run(model, datamodule=dm, verbose=False)
        (line,) = capsys.readouterr().out.splitlines()
        logged = trainer.callback_metrics
        # Keras' evaluate: the batches, then the metrics by their names, without `val_`
        steps = {"val": 3, "test": 4}[stage]  # 128 validation, 200 test images in batches of 50
        assert line.startswith(f"{steps}/{steps} - ")
        accuracy, loss = float(logged[f"{stage}/acc"]), float(logged[f"{stage}/loss"])
        assert line.endswith(f" - accuracy: {accuracy:.4f} - loss: {loss:.4f}")
    trainer.predict(model, datamodule=dm)
    assert re.fullmatch(r"4/4 - \d+s - \d+(s|ms|us)/step\n", capsys.readouterr().out)


def test_one_epoch_has_no_header_and_no_validation_no_val_metrics(
    tmp_path: Path, fashion, capsys: pytest.CaptureFixture
) -> None:
    fit_with_bar(tmp_path, fashion, epochs=1, limit_val_batches=0)
    (line,) = capsys.readouterr().out.splitlines()  # Keras prints `Epoch k/N` only for more than one epoch
    assert re.fullmatch(r"21/21 - \d+s - \S+/step - accuracy: \S+ - loss: \S+", line)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_idx_set(tmp_path / "data", n_train=250, n_test=60)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_default_and_its_switches(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    fit = ["fit", *SYNTHETIC, "--trainer.max_epochs", "2", "--trainer.enable_model_summary", "false"]
    cli = cli_main(fit)
    assert isinstance(cli.trainer.progress_bar_callback, KerasProgressBar)
    lines = capsys.readouterr().out.splitlines()
    # 200 training images in batches of 32: 7 steps an epoch; the final test is silent but for its Test line
    assert lines[0::2][:2] == ["Epoch 1/2", "Epoch 2/2"] and len(lines) == 5
    assert all(re.fullmatch(rf"7/7 - \d+s - \S+/step(?: - {METRIC}){{4}}", line) for line in lines[1:4:2]), lines
    assert lines[4].startswith("Test (checkpoint epoch=")
    cli = cli_main([*fit, "--trainer.enable_progress_bar", "false"])  # silences it
    assert cli.trainer.progress_bar_callback is None
    assert [line[:5] for line in capsys.readouterr().out.splitlines()] == ["Test "]
    cli = cli_main([*fit, "--test_after_fit", "false", "--trainer.callbacks", "TQDMProgressBar"])  # or yours
    assert type(cli.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"


def test_piped_cli_prints_one_line_per_epoch(workdir: Path) -> None:
    result = run_cli(["fit", *SYNTHETIC, "--trainer.max_epochs", "3"], workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0:6:2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(re.fullmatch(rf"7/7 - \d+s - \S+/step(?: - {METRIC}){{4}}", line) for line in lines[1:6:2]), lines
    assert len(lines) == 7 and lines[6].startswith("Test (")


def run_in_terminal(args: list[str], cwd: Path, columns: int, timeout: float = 3600) -> bytes:
    """`python ARGS` in a pseudo-terminal of `columns` × 50, as a user's shell runs it; everything it wrote."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FASHION_LAB_DEBUG")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([parent], [], [], 1)[0]:
            try:
                data = os.read(parent, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            output += data
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(parent)
    assert proc.wait(timeout=60) == 0, output[-3000:].decode(errors="replace")
    return output


@pytest.fixture(scope="module", params=[80, 120])
def seed_screen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[str]]:
    """The seed's 5-epoch `fit` (real Fashion-MNIST), as a terminal of 80 or 120 columns shows it at the end."""
    columns = request.param
    cwd = tmp_path_factory.mktemp(f"seed_{columns}")
    output = run_in_terminal(["-m", "fashion_lab.cli", "fit", "--config", str(REPO / "configs" / "fashion_mnist.yaml")],
                             cwd, columns)  # fmt: skip
    screen = render(output, columns, rows=1000)
    if SCREENSHOTS and columns == 80:
        Path(SCREENSHOTS, "console_fit.txt").write_text("\n".join(screen) + "\n", encoding="utf-8")
    return columns, screen


@pytest.mark.slow
@pytest.mark.real_data
def test_seed_fit_in_a_terminal(seed_screen: tuple[int, list[str]]) -> None:
    columns, screen = seed_screen
    assert [line for line in screen if line.startswith("Epoch ")] == [f"Epoch {k}/5" for k in range(1, 6)]
    epochs = [line for line in screen if line.startswith("1500/1500")]
    assert len(epochs) == 5
    for k, line in enumerate(epochs, 1):  # each epoch's line stays, under its header
        assert screen[screen.index(f"Epoch {k}/5") + 1] == line
    accuracy = "accuracy" if columns >= 120 else "acc"  # 80 columns: Keras' short name, and no bar
    for line in epochs:
        assert len(line) < columns  # so it never wrapped, and no metric is split over two lines
        assert f" - {accuracy}: " in line and f" - val_{accuracy}: " in line and " - val_loss: " in line
        assert columns >= 120 or "━" not in line
        assert re.fullmatch(rf"1500/1500(?: ━{{20}})?(?: \d+s)?(?: \d+(?:s|ms|us)/step)?(?: - {METRIC}){{4}}", line)
    assert "v_num" not in "\n".join(screen)
    test = [line for line in screen if line.startswith("Test (")]
    assert len(test) == 1 and screen.index(test[0]) > screen.index(epochs[-1])
