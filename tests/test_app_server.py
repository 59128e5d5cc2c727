"""The page (fashion_lab.app) as a server under hostile uploads and long use, through its HTTP API (what a browser,
a script or an attacker sends): one pixel limit and one reading for every box, memory that stays flat over 500
events, an upload size limit, Gradio's cache aged out and emptied, the address and login on a network, and a load
test whose every answer is `predict`'s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from fashion_lab import ImageFilesDataModule
from fashion_lab.app import load, look
from fashion_lab.synthetic import make_images
from tests.helpers.browser import answers, free_port, wait_until
from tests.helpers.page_client import PageClient, rss_mib, sketch_value
from tests.helpers.paths import REPO
from tests.helpers.photos import blank_pictures, png_bomb, write_photos
from tests.helpers.trainer import make_trainer

LIMIT = "over the limit of 50,000,000"
BOMBS = {  # picture: the start of its row's reason (12000²: our limit, from the header; 30000²: Pillow's own)
    "bomb_12000.png": f"12000×12000 = 144,000,000 pixels, {LIMIT} (a possible decompression bomb",
    "bomb_30000.png": f"{LIMIT} pixels (a possible decompression bomb",
}


@contextmanager
def served(args: list[str], cwd: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`python -m fashion_lab.app ARGS --port P` as a user starts it, with Gradio's cache in cwd/gradio_cache:
    (its URL, the process, its log) until the block ends; then stopped with SIGTERM, as a service manager does."""
    port = free_port()
    cache, log = cwd / "gradio_cache", cwd / "server.log"
    cache.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "fashion_lab.app", *args, "--port", str(port)]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_TEMP_DIR": str(cache), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while not answers(url) and "Serving" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the page did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(fashion_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The page for the synthetic Fashion-MNIST checkpoint, uploads limited to 5 MB: (URL, server pid)."""
    folder = tmp_path_factory.mktemp("page")
    with served(["--ckpt_path", str(fashion_checkpoint), "--max_file_size", "5MB", "--top_k", "3"], folder) as (
        url,
        proc,
        _,
    ):
        yield url, proc.pid


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two bombs of BOMBS, a 16-bit grey PNG (a dark pair of trousers on light paper, every level above 255),
    and 12 photos."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "bomb_12000.png").write_bytes(png_bomb(12_000, 12_000))  # every row: 140 KB, 144 MP decoded
    (folder / "bomb_30000.png").write_bytes(png_bomb(30_000, 30_000, rows=10))
    trousers = np.full((96, 64), 52_000, np.uint16)
    trousers[10:90, 14:30] = trousers[10:90, 34:50] = 9_000
    trousers[10:30, 14:50] = 9_000
    Image.fromarray(trousers).save(folder / "trousers16.png")
    assert Image.open(folder / "trousers16.png").mode == "I;16"
    photos = write_photos(make_images(12, num_classes=10, seed=3)[0], folder / "photos")
    return {p.name: p for p in [*folder.glob("*.png"), *photos]}


def in_box(box: str, upload: dict) -> dict:
    """show()'s arguments with `upload` in one box: the files box, the photo box (webcam, paste) or the sketchpad."""
    return {"files": {"files": [upload]}, "photo": {"photo": upload}, "sketch": {"sketch": sketch_value(upload)}}[box]


def top(seen, k: int = 3) -> dict[str, float]:
    return dict(sorted(seen.probabilities.items(), key=lambda item: item[1], reverse=True)[:k])


class PeakRSS:
    """The highest resident memory of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, rss_mib(pid), True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.running = False
        self.thread.join()


# --- one gate for every picture -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("box", ["files", "photo", "sketch"])
def test_every_box_meets_predicts_gate(box: str, page: tuple, pictures: dict, fashion_checkpoint: Path) -> None:
    """Bombs get the page's own message in their row, unread (the server's memory within 100 MiB); a 16-bit PNG is
    read as `predict` reads it, whichever box it came through."""
    url, pid = page
    client = PageClient(url)
    before = rss_mib(pid)
    with PeakRSS(pid) as memory:
        for name, reason in BOMBS.items():
            (row,) = client.show(**in_box(box, client.upload(pictures[name])))
            assert row.error is not None and row.error.startswith(reason), row
        (row,) = client.show(**in_box(box, client.upload(pictures["trousers16.png"])))
    assert memory.peak - before < 100, (before, memory.peak)
    model, scaling, _ = load(str(fashion_checkpoint))
    (expected,) = look([("trousers16.png", str(pictures["trousers16.png"]))], model, scaling)
    assert list(row.bars) == list(top(expected)) and all(
        abs(row.bars[c] - p) < 1e-6 for c, p in top(expected).items()
    ), (row.bars, top(expected))
    assert np.array_equal(row.image, expected.image)
    assert row.name == {"files": "trousers16.png", "photo": "webcam or pasted picture", "sketch": "your drawing"}[box]


@pytest.mark.slow
def test_blank_pictures_get_no_class(page: tuple, tmp_path: Path) -> None:
    client = PageClient(page[0])
    rows = client.show(files=[client.upload(p) for p in blank_pictures(tmp_path / "blank")])
    assert [(r.name, r.no_object, r.bars, r.image.any()) for r in rows] == [
        (name, True, None, False) for name in ["black.png", "white.jpg", "transparent.png", "dot.png"]
    ]


@pytest.mark.slow
def test_controls_are_checked_as_predict_checks_them(page: tuple, pictures: dict) -> None:
    """Gradio does not check what a client sends for the controls when it does not preprocess: the page does."""
    client = PageClient(page[0])
    upload = client.upload(pictures["trousers16.png"])
    for control, value, says in [
        ("margin", 40, "margin=40 is out of range; allowed: an integer 0..13."),
        ("threshold", 1.5, "threshold=1.5 is out of range; allowed: 0 <= threshold < 1."),
        ("invert", "sometimes", "invert='sometimes' is out of range; allowed: 'auto', 'always', 'never'."),
    ]:
        with pytest.raises(Exception, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            client.show(files=[upload], **{control: value})


# --- bounded memory and disk --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_memory_stays_flat_over_500_events(page: tuple, pictures: dict) -> None:
    url, pid = page
    client = PageClient(url)
    upload = client.upload(pictures["00000.jpg"])
    for _ in range(20):  # warm-up: lazy imports, thread pools, the allocator's first arenas
        client.show(files=[upload])
    before = rss_mib(pid)
    with ThreadPoolExecutor(4) as pool:  # 500 events, each in its own session (Gradio's /call route)
        rows = list(pool.map(lambda _: client.show(files=[upload]), range(500)))
    assert all(r.bars == rows[0][0].bars and r.image.tobytes() == rows[0][0].image.tobytes() for (r,) in rows)
    assert rows[0][0].bars is not None
    after = rss_mib(pid)
    print(f"\n500 events: RSS {before:.0f} → {after:.0f} MiB")
    assert after - before < 50, (before, after)


@pytest.mark.slow
def test_uploads_over_the_limit_are_refused(page: tuple, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(6 * 2**20))  # 6 MB over --max_file_size 5MB
    with open(big, "rb") as f:
        response = httpx.post(f"{page[0]}gradio_api/upload", files={"files": ("big.png", f)}, timeout=60)
    assert response.status_code == 413, response.text
    assert "maximum allowed size" in response.text, response.text


@pytest.mark.slow
def test_the_cache_is_aged_out_and_emptied(fashion_checkpoint: Path, pictures: dict, tmp_path: Path) -> None:
    """Uploads older than --cache_age go while the page runs; everything Gradio wrote goes when it stops."""
    cache = tmp_path / "gradio_cache"

    def files() -> list[Path]:
        return [p for p in cache.rglob("*") if p.is_file()]

    with served(["--ckpt_path", str(fashion_checkpoint), "--cache_age", "2"], tmp_path) as (url, _, _):
        client = PageClient(url)
        (row,) = client.show(files=[client.upload(pictures["00001.jpg"])])
        assert row.bars is not None and [p.name for p in files()] == ["00001.jpg"]
        wait_until(lambda: not files(), timeout=30, what="the upload to age out")
        client.show(files=[client.upload(pictures["00002.jpg"])], photo=client.upload(pictures["00003.jpg"]))
        assert len(files()) == 2
    assert list(cache.iterdir()) == []


# --- on a network ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_on_the_network_it_warns_and_asks_for_a_login(fashion_checkpoint: Path, tmp_path: Path) -> None:
    args = ["--ckpt_path", str(fashion_checkpoint), "--host", "0.0.0.0", "--auth", "ada:lovelace"]
    with served(args, tmp_path) as (url, _, log):
        wait_until(lambda: "Serving" in log.read_text(), what="the start-up lines")
        lines = log.read_text().splitlines()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}config", timeout=30)
        login = httpx.post(f"{url}login", data={"username": "ada", "password": "lovelace"}, timeout=30)
        wrong = httpx.post(f"{url}login", data={"username": "ada", "password": "babbage"}, timeout=30)
        config = httpx.get(f"{url}config", cookies=login.cookies, timeout=30)
    assert refused.value.code == 401 and wrong.status_code == 400
    assert login.status_code == 200 and config.status_code == 200 and "components" in config.json()
    page_line, warning = lines[0], lines[1]
    assert page_line.startswith("The page: http://") and "0.0.0.0" not in page_line and "localhost" not in page_line
    assert warning == (
        "warning: --host 0.0.0.0 makes the page reachable by anyone on the network who has the --auth password "
        "(plain HTTP). --host 127.0.0.1 keeps it on this machine."
    )


# --- load -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_20_clients_get_predicts_answers(page: tuple, pictures: dict, fashion_checkpoint: Path, tmp_path: Path) -> None:
    """20 clients at once, 5 pictures each (one event per picture, upload included): every answer is `predict`'s.
    Prints the latency and the server's peak memory quoted in the README."""
    url, pid = page
    photos = [pictures[f"{i:05d}.jpg"] for i in range(10)]
    model, _, ckpt = load(str(fashion_checkpoint))
    dm = ImageFilesDataModule(paths=[str(p) for p in photos])
    probabilities = torch.cat(make_trainer(tmp_path).predict(model, datamodule=dm, ckpt_path=ckpt))
    names = model.class_names
    expected = {p.name: (i, dm.predict_set.images[i].numpy()) for i, p in enumerate(photos)}

    def client(c: int) -> list[tuple[float, str, object]]:
        page_client, answers = PageClient(url), []
        for j in range(5):
            photo = photos[(c + j) % len(photos)]
            start = time.perf_counter()
            (row,) = page_client.show(files=[page_client.upload(photo)])
            answers.append((time.perf_counter() - start, photo.name, row))
        return answers

    before = rss_mib(pid)
    with PeakRSS(pid) as memory, ThreadPoolExecutor(20) as pool:
        results = [answer for answers in pool.map(client, range(20)) for answer in answers]
    assert len(results) == 100
    for _, name, row in results:
        i, image = expected[name]
        top3 = probabilities[i].topk(3)
        assert list(row.bars) == [names[j] for j in top3.indices.tolist()], (name, row.bars)
        assert all(abs(row.bars[names[j]] - p) < 1e-6 for p, j in zip(*top3, strict=True))
        assert np.array_equal(row.image, image)
    latencies = sorted(seconds for seconds, _, _ in results)
    p50, p95 = latencies[49], latencies[94]
    print(f"\n20 clients × 5 pictures: p50 {p50:.2f} s, p95 {p95:.2f} s; RSS {before:.0f} → peak {memory.peak:.0f} MiB")
    assert p95 < 30
