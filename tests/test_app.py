"""The page (fashion_lab.app): `predict`'s own preprocessing and probabilities, bad pictures named in the page while
the others are shown, bad checkpoints refused with the CLI's one `error:` line before any server starts, and the
real page in headless Chromium: real Fashion-MNIST photos and broken files uploaded, the top classes, the 28×28s and
the messages read back from the page, a control that updates them, and no request leaving the machine."""

from __future__ import annotations

import io
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashion_lab import ImageFilesDataModule
from fashion_lab.app import SHOWN_SCALE, addresses_note, load, look, main, rows_html
from fashion_lab.cli import cli_main
from fashion_lab.data import CLASSES
from fashion_lab.sources import read_idx
from tests.helpers.browser import FAKE_CAMERA, chromium, free_port, outside_requests, screenshot, serve, wait_until
from tests.helpers.commands import QUIET, run_command
from tests.helpers.crafted import PWNED, RunsCode
from tests.helpers.paths import REAL_FASHION, REPO
from tests.helpers.photos import blank_pictures, png_bomb, write_photos
from tests.helpers.trainer import make_trainer

FASHION = list(CLASSES["FashionMNIST"])
# What each broken file makes the page say (PictureError's reasons, from fashion_lab.pictures)
BROKEN = {
    "truncated.jpg": "corrupt or truncated image",
    "notes.png": "not an image (Pillow recognises no image format in it)",
    "bomb.png": "8000×8000 = 64,000,000 pixels, over the limit of 50,000,000",
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose lightning_logs/ holds one run: the seed's network, 1 epoch on real Fashion-MNIST in batches of
    128 (375 steps: a quarter of the seed's), `normalize` (so the page must scale pictures with the checkpoint's
    statistics)."""
    folder = tmp_path_factory.mktemp("real_run")
    data = ["--data.normalize", "true", "--data.batch_size", "128", "--data.download", "false"]
    data += ["--data.data_dir", str(REAL_FASHION)]
    fit = ["fit", *data, *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"]
    cli_main([*fit, "--trainer.logger.init_args.save_dir", str(folder)])
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[int], dict[str, Path]]:
    """The first 30 real test images as user photos (JPEG, dark on a tinted light backdrop), their labels, and the
    broken files of BROKEN."""
    folder = tmp_path_factory.mktemp("pictures")
    images = read_idx(REAL_FASHION / "t10k-images-idx3-ubyte.gz", "images")[:30]
    labels = read_idx(REAL_FASHION / "t10k-labels-idx1-ubyte.gz", "labels")[:30].tolist()
    photos = write_photos(images, folder / "photos")
    broken = {name: folder / name for name in BROKEN}
    broken["truncated.jpg"].write_bytes(photos[0].read_bytes()[:400])
    broken["notes.png"].write_text("a shopping list, not a picture\n")
    broken["bomb.png"].write_bytes(png_bomb(8000, 8000))
    return photos, labels, broken


def checkpoint(run: Path) -> Path:
    return run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def named(paths: list[Path]) -> list[tuple[str, str]]:
    """Pictures as the page names them: by file name."""
    return [(p.name, str(p)) for p in paths]


# --- the page's model: predict's code path --------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{}, {"invert": "always", "crop": False, "threshold": 0.3, "margin": 4}],
    ids=["defaults", "controls"],
)
def test_look_is_predict(real_run: Path, pictures: tuple, tmp_path: Path, options: dict) -> None:
    """The 28×28s, probabilities and unreadable files of the page are `predict`'s, with any control settings."""
    photos, _, broken = pictures
    paths = [*photos[:6], broken["truncated.jpg"], *photos[6:8], broken["notes.png"], broken["bomb.png"]]
    model, scaling, ckpt = load(str(checkpoint(real_run)))
    seen = look(named(paths), model, scaling, **options)

    dm = ImageFilesDataModule(paths=[str(p) for p in paths], **options)
    probabilities = torch.cat(make_trainer(tmp_path).predict(model, datamodule=dm, ckpt_path=ckpt))
    readable = [s for s in seen if s.error is None]
    assert [s.name for s in readable] == [Path(p).name for p in dm.predict_set.paths]
    assert np.array_equal(np.stack([s.image for s in readable]), dm.predict_set.images.numpy())
    assert all(s.probabilities is not None for s in readable)  # every photo shows its object
    page = torch.tensor([[s.probabilities[n] for n in FASHION] for s in readable])
    assert torch.allclose(page, probabilities, atol=1e-6)
    assert [(s.name, s.error) for s in seen if s.error] == [(Path(p).name, r) for p, r in dm.predict_set.failures]
    assert [s.name for s in seen if s.error] == ["truncated.jpg", "notes.png", "bomb.png"]  # in upload order
    if not options:  # 1 epoch of the seed's network reads most of the photos right
        labels = pictures[1]
        right = [max(s.probabilities, key=s.probabilities.get) == FASHION[labels[i]] for i, s in enumerate(readable)]
        assert sum(right) >= 6, right


@pytest.mark.slow
def test_k49_checkpoint_names_hiragana(k49_dir: Path, tmp_path: Path) -> None:
    fit = ["fit", "--data", "K49DataModule", "--data.data_dir", str(k49_dir), "--data.download", "false", *QUIET]
    cli_main([*fit, "--trainer.max_epochs", "1", "--test_after_fit", "false", "--trainer.logger.init_args.save_dir",
              str(tmp_path)])  # fmt: skip
    picture = tmp_path / "drawn.png"
    drawn = np.full((60, 40), 255, np.uint8)
    drawn[10:50, 15:25] = 0  # a dark stroke on white
    Image.fromarray(drawn).save(picture)
    model, _, _ = load(str(checkpoint(tmp_path)))
    (seen,) = look(named([picture]), model, {"mean": 0.0, "std": 1.0})
    assert list(seen.probabilities) == list(CLASSES["K49"]) and "あ" in seen.probabilities
    assert sum(seen.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_blank_pictures_show_no_object(fashion_checkpoint: Path, tmp_path: Path) -> None:
    """All black, all white, fully transparent, 1×1: 'no object found' and no probabilities, as `predict` writes."""
    model, scaling, _ = load(str(fashion_checkpoint))
    blanks = blank_pictures(tmp_path / "blank")
    seen = look(named(blanks), model, scaling)
    assert [(s.error, s.probabilities, s.image.any()) for s in seen] == [(None, None, False)] * 4
    page = rows_html(seen, top_k=3)
    assert page.count("no object found (nothing stands out from the background by more than the threshold)") == 4
    assert "<meter" not in page


# --- bad checkpoints: the CLI's one line, before any server ------------------------------------------------------


def bad_checkpoints(tmp: Path, good: Path) -> dict[str, str]:
    """Each bad --ckpt_path as given (files written into tmp), by case name."""
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": RunsCode(tmp / PWNED)}, tmp / "crafted.ckpt")
    (tmp / "truncated.ckpt").write_bytes(good.read_bytes()[:5000])
    return {
        "missing": "nowhere/last.ckpt",
        "last_without_runs": "last",
        "crafted": "crafted.ckpt",
        "truncated": "truncated.ckpt",
        "folder": ".",
    }


def error_of(run, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """run() → (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        run()
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


@pytest.mark.slow
def test_bad_checkpoints_get_the_clis_line(
    fashion_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./lightning_logs: `last` finds no run
    for case, ckpt in bad_checkpoints(tmp_path, fashion_checkpoint).items():
        code, out, err = error_of(lambda ckpt=ckpt: main(["--ckpt_path", ckpt, "--port", "1"]), capsys)
        cli_code, _, cli_err = error_of(lambda ckpt=ckpt: cli_main(["predict", "--ckpt_path", ckpt, *QUIET]), capsys)
        assert (code, cli_code) == (1, 1), case
        assert err == cli_err and err.startswith("error: --" if case == "last_without_runs" else "error: checkpoint")
        assert len(err.splitlines()) == 1 and "Traceback" not in err and "Serving" not in out, case
    assert not (tmp_path / PWNED).exists()  # the crafted checkpoint's code never ran


@pytest.mark.slow
def test_checkpoints_that_are_not_a_model(fashion_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """A plain torch file and a checkpoint naming a model class outside fashion_lab: one line each, the fix."""
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.ckpt")
    foreign = torch.load(fashion_checkpoint, weights_only=True)
    foreign["hyper_parameters"]["_class_path"] = "elsewhere.Model"
    torch.save(foreign, tmp_path / "foreign.ckpt")
    says = {
        "plain.ckpt": "holds no model weights and settings (not written by fit). Fix: pass a .ckpt that fit wrote",
        "foreign.ckpt": "is not an MLPClassifier (ValueError: The class 'elsewhere.Model' requested by the checkpoint",
    }
    for name, fragment in says.items():
        code, _, err = error_of(lambda name=name: main(["--ckpt_path", str(tmp_path / name)]), capsys)
        assert code == 1 and err.startswith(f"error: checkpoint {tmp_path / name} ") and fragment in err, err
        assert "Fix: pass a .ckpt that fit wrote" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_real_process_refuses_before_serving(tmp_path: Path, fashion_checkpoint: Path) -> None:
    bad_checkpoints(tmp_path, fashion_checkpoint)
    result = run_command(["-m", "fashion_lab.app", "--ckpt_path", "crafted.ckpt"], tmp_path, timeout=120)
    assert result.returncode == 1 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.startswith("error: checkpoint crafted.ckpt holds a Python object (exec) that would run code")
    assert "gradio" not in result.stderr.lower() and not (tmp_path / PWNED).exists()


@pytest.mark.slow
def test_a_taken_port_is_one_line(fashion_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = error_of(lambda: main(["--ckpt_path", str(fashion_checkpoint), "--port", str(port)]), capsys)
    assert code == 1 and err == (
        f"error: port {port} on 127.0.0.1 is in use by another program. Fix: pass another --port (e.g. --port "
        f"{port + 1}), or stop the program that listens there.\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("192.0.2.1", "cannot listen on host='192.0.2.1': Cannot assign requested address. Fix: pass --host"),
        ("no-such-host.invalid", "host='no-such-host.invalid' is not an address or a known host name ("),
    ],
)
def test_an_address_it_cannot_listen_on_is_one_line(
    host: str, says: str, fashion_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    """An address of no interface of this machine (a documentation address), and a name that resolves to none."""
    code, out, err = error_of(lambda: main(["--ckpt_path", str(fashion_checkpoint), "--host", host]), capsys)
    assert code == 1 and err.startswith(f"error: {says}") and len(err.splitlines()) == 1, err
    assert "127.0.0.1 (this machine only), 0.0.0.0 (every network) or an address of this machine." in err
    assert "ERROR" not in out + err and "empty port" not in err


def test_the_address_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback: the address only. Any other: the real address (never 0.0.0.0) and one warning line."""
    assert addresses_note("127.0.0.1", 7860, login=False) == ["The page: http://127.0.0.1:7860/"]
    assert addresses_note("localhost", 7860, login=False) == ["The page: http://127.0.0.1:7860/"]
    monkeypatch.setattr("fashion_lab.app.network_addresses", lambda: ["10.1.2.3"])
    assert addresses_note("0.0.0.0", 8000, login=False) == [
        "The page: http://10.1.2.3:8000/",
        "warning: --host 0.0.0.0 makes the page reachable by anyone on the network, with no login (plain HTTP). "
        "--host 127.0.0.1 keeps it on this machine; --auth user:password adds a login.",
    ]


def test_without_gradio_the_fix_is_named(
    fashion_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` meets where the extra is not installed
    code, _, err = error_of(lambda: main(["--ckpt_path", str(fashion_checkpoint)]), capsys)
    assert code == 1 and err.startswith("error: the page needs Gradio, an optional extra. Fix: pip install -e '.[app]'")


# --- the real page in a real browser -----------------------------------------------------------------------------


def shown_28x28(element) -> np.ndarray:
    """The picture an `.seen` image shows (an inline PNG), read as the browser read it: the model's 28×28, drawn
    SHOWN_SCALE× larger with square pixels."""
    with urllib.request.urlopen(element.get_attribute("src"), timeout=30) as response:  # a data: URL
        shown = np.asarray(Image.open(io.BytesIO(response.read())).convert("L"))
    assert element.size == {"width": 28 * SHOWN_SCALE, "height": 28 * SHOWN_SCALE}
    assert element.value_of_css_property("image-rendering") == "pixelated"
    return shown


def read_page(browser) -> tuple[list[dict], list[str]]:
    """Per picture row: its name, the top class, each bar's class and probability, and the 28×28; and the messages."""
    rows = []
    for row in browser.find_elements("css selector", "#results .picture"):
        label = row.find_elements("css selector", ".prediction")
        if not label:
            continue
        bars = zip(
            label[0].find_elements("css selector", "dt"), label[0].find_elements("css selector", "meter"), strict=True
        )
        rows.append({
            "name": label[0].find_element("css selector", ".name").text.strip(),
            "top": label[0].find_element("css selector", ".top").text,
            "bars": {dt.text: float(meter.get_attribute("value")) for dt, meter in bars},
            "image": shown_28x28(row.find_element("css selector", ".seen")),
        })  # fmt: skip
    return rows, [e.text for e in browser.find_elements("css selector", "#results .unreadable")]


def tops(seen: list) -> list[str]:
    return [max(s.probabilities, key=s.probabilities.get) for s in seen]


def tops_and_first_image(browser) -> tuple[list[str], bytes]:
    rows, _ = read_page(browser)
    return [r["top"] for r in rows], rows[0]["image"].tobytes()


@pytest.fixture(scope="module")
def page_url(real_run: Path) -> Iterator[str]:
    """The page, served as a user starts it: `python -m fashion_lab.app --ckpt_path last` in the run's folder."""
    port = free_port()
    command = [sys.executable, "-m", "fashion_lab.app", "--ckpt_path", "last", "--port", str(port), "--top_k", "3"]
    with serve(command, real_run, port, PYTHONPATH=str(REPO)) as url:
        yield url


@pytest.mark.real_data
@pytest.mark.slow
def test_the_page_in_chromium(page_url: str, real_run: Path, pictures: tuple, tmp_path: Path) -> None:
    photos, labels, broken = pictures
    model, scaling, _ = load(str(checkpoint(real_run)))
    seen = look(named(photos), model, scaling)
    # three photos the model reads right, of three classes: the page must show each one's true class on top
    chosen, classes = [], set()
    for path, label, s in zip(photos, labels, seen, strict=True):
        if tops([s]) == [FASHION[label]] and label not in classes:
            chosen.append((path, label, s))
            classes.add(label)
    chosen = chosen[:3]
    (first, _, _), (second, _, _), (third, _, _) = chosen
    # a name that is HTML, a Handlebars tag and a JavaScript template: shown as text, never run or filled in
    hostile = tmp_path / "<img src=x onerror=alert(1)> {{value}} ${1+1}.jpg"
    hostile.write_bytes(first.read_bytes())
    uploads = [first, broken["truncated.jpg"], second, broken["notes.png"], third, broken["bomb.png"], hostile]

    with chromium() as browser:
        browser.get(page_url)
        files = wait_until(lambda: browser.find_elements("css selector", "#pictures input[type=file]"), what="upload")
        files[0].send_keys("\n".join(str(p) for p in uploads))  # as a drop of six files at once
        wait_until(lambda: len(read_page(browser)[0]) == 4 and len(read_page(browser)[1]) == 3, what="7 results")
        rows, messages = read_page(browser)
        shot = screenshot(browser, "app", tmp_path)

        assert [r["name"] for r in rows] == [p.name for p, _, _ in chosen] + [hostile.name]  # in upload order
        assert rows[3]["bars"] == rows[0]["bars"] and not browser.find_elements("css selector", "#results img[src=x]")
        for row, (_, label, s) in zip(rows, chosen, strict=False):
            assert row["top"] == FASHION[label]
            top3 = sorted(s.probabilities, key=s.probabilities.get, reverse=True)[:3]
            assert list(row["bars"]) == top3
            assert all(abs(row["bars"][c] - s.probabilities[c]) < 1e-6 for c in top3)
            assert np.array_equal(row["image"], s.image)  # the model's 28×28, pixel for pixel
        assert [m.split(" could not be read: ")[0] for m in messages] == [f"⚠ {n}" for n in BROKEN]
        for message, reason in zip(messages, BROKEN.values(), strict=True):
            assert reason in message
        assert shot.stat().st_size > 20_000 and Image.open(shot).size[0] == 1280

        # a control updates every result. invert "never" on a dark object on white: the white is taken for the
        # background level and subtracted, and the darker object goes with it, so the model sees almost nothing
        browser.find_element("xpath", "//label[.//span[text()='never']]").click()
        never = look(named([p for p, _, _ in chosen] + [hostile]), model, scaling, invert="never")
        wait_until(lambda: tops_and_first_image(browser) == (tops(never), never[0].image.tobytes()), what="never")
        assert len(read_page(browser)[1]) == 3  # the unreadable files still say so
        assert outside_requests(browser) == []  # fonts, scripts, analytics: nothing from outside the machine


@pytest.mark.real_data
@pytest.mark.slow
def test_webcam_and_drawing_in_chromium(page_url: str) -> None:
    """A photo from Chromium's fake camera (its test pattern) and two strokes on the sketchpad: one row each."""
    from selenium.webdriver.common.action_chains import ActionChains

    with chromium(flags=FAKE_CAMERA) as browser:
        browser.get(page_url)
        webcam = "//*[@id='photo']//*[contains(text(), 'Click to Access Webcam')]"
        wait_until(lambda: browser.find_elements("xpath", webcam), what="the webcam")[0].click()
        wait_until(lambda: browser.find_elements("css selector", "#photo button[aria-label='capture photo']"),
                   what="the capture button")[0].click()  # fmt: skip
        browser.find_element("css selector", "#sketch button[aria-label=Brush]").click()
        canvas = browser.find_elements("css selector", "#sketch canvas")[-1]
        draw = ActionChains(browser)
        for x in (-40, 40):  # two legs, dark on the white canvas
            draw.move_to_element_with_offset(canvas, x, -120).click_and_hold().move_by_offset(x // 10, 240).release()
        draw.perform()
        wait_until(lambda: len(read_page(browser)[0]) == 2, what="two results")
        camera, drawing = read_page(browser)[0]
        assert outside_requests(browser) == []
    assert (camera["name"], drawing["name"]) == ("webcam or pasted picture", "your drawing")
    assert camera["top"] in FASHION and drawing["top"] in FASHION
    assert camera["image"].max() > 100 and drawing["image"].max() > 200  # an object, light on black
    # the strokes inverted and cropped: two light legs (taller than wide: padded to a square, black at the sides)
    legs = drawing["image"][20]
    assert legs[:13].max() > 100 and legs[15:].max() > 100 and legs[13:15].max() == 0, legs
    assert legs[0] == legs[-1] == 0, legs


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--top_k", "0"], "top_k=0 is out of range; allowed: a positive integer."),
        (["--port", "70000"], "port=70000 is out of range; allowed: 1..65535."),
        (["--max_pixels", "0"], "max_pixels=0 is out of range; allowed: a positive integer."),
        (["--cache_age", "0"], "cache_age=0 is out of range; allowed: a positive integer."),
    ],
)
def test_bad_options_are_one_line(args: list[str], says: str, capsys: pytest.CaptureFixture) -> None:
    """Checked before the checkpoint is read, with `errors.check`'s words, as every command's."""
    code, _, err = error_of(lambda: main(["--ckpt_path", "last", *args]), capsys)
    assert code == 1 and err == f"error: {says}\n"
