"""Servers started as a user starts them, on 127.0.0.1 and a free port, and a real browser to look at their pages:
Debian's headless Chromium driven through Debian's chromedriver (selenium), with a fresh profile each time.

    with serve([sys.executable, "-m", "fashion_lab.app", ...], cwd, port) as url, chromium() as browser:
        browser.get(url)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian: chromium, chromium-driver
# Headless, as root (no sandbox), and nothing of Chromium's own reaching out: no QUIC, sync, component updates or
# background fetches, so every request the performance log shows comes from the page.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
LOCAL = {"127.0.0.1", "localhost", "::1"}
# Where screenshots go: FASHION_LAB_SCREENSHOTS=reports refreshes the README's; by default the test's own folder.
SCREENSHOTS = os.environ.get("FASHION_LAB_SCREENSHOTS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(command: list[str], cwd: Path, port: int, path: str = "/", timeout: float = 120, **env: str) -> Iterator[str]:
    """Run `command` (a server listening on 127.0.0.1:`port`) until `path` answers; yield its URL; stop it.

    Its output goes to cwd/server.log, quoted when it exits early or never answers.
    """
    url, log = f"http://127.0.0.1:{port}{path}", cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[:3]} did not serve {url} (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@contextmanager
def chromium(width: int = 1280, height: int = 1000, flags: tuple[str, ...] = ()) -> Iterator:
    """A headless Chromium (selenium WebDriver) with an empty profile and its network requests logged; `flags` add
    to FLAGS (FAKE_CAMERA: a webcam that shows Chromium's test pattern, allowed without asking)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fashion-lab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, *flags, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # read by `outside_requests`
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def outside_requests(driver) -> list[str]:
    """Every http(s)/ws(s) URL the browser requested from a host other than this machine, since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(message["params"].get("request", message["params"]).get("url", ""))
    web = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]  # not data:, blob:, chrome:
    return [u for u in web if urlsplit(u).hostname not in LOCAL]


def wait_until(condition, timeout: float = 60, what: str = "the page"):
    """Poll `condition()` until it returns something truthy (returned), or fail naming `what`. An element that the
    page replaced while `condition` read it (Gradio re-renders results) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def screenshot(driver, name: str, folder: Path) -> Path:
    """The whole page as `name`.png in $FASHION_LAB_SCREENSHOTS (if set) or `folder`; returns the path."""
    target = Path(SCREENSHOTS) if SCREENSHOTS else folder
    target.mkdir(parents=True, exist_ok=True)
    # the whole page, not the first screen: the window's height is the page's plus the browser's own frame
    frame, height = driver.execute_script(
        "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight]"
    )
    driver.set_window_size(driver.get_window_size()["width"], frame + height)
    path = target / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
