"""The page's HTTP API as a script or a hostile client uses it, without a browser: upload files to Gradio's upload
route, call the page's `show` event with any value in any box, and read the rows it returns; and the served
process' resident memory.

    page = PageClient(url)
    rows = page.show(files=[page.upload(path)])
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

CONTROLS = {"invert": "auto", "crop": True, "threshold": 0.15, "margin": 0}


@dataclass
class Row:
    """One picture's row in the page: its name and top classes with probabilities, the reason it could not be read,
    or that it shows no object; and the 28×28 shown (None for an unreadable picture)."""

    name: str
    bars: dict[str, float] | None = None
    error: str | None = None
    no_object: bool = False
    image: np.ndarray | None = None

    @property
    def top(self) -> str:
        return next(iter(self.bars))


class PageClient:
    def __init__(self, url: str, timeout: float = 120) -> None:
        self.url, self.http = url.rstrip("/"), httpx.Client(timeout=timeout)

    def upload(self, path: Path, name: str | None = None) -> dict:
        """The file uploaded as a browser drops it: its FileData for any box."""
        with open(path, "rb") as f:
            response = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (name or path.name, f)})
        response.raise_for_status()
        (server_path,) = response.json()
        return {"path": server_path, "orig_name": name or path.name, "meta": {"_type": "gradio.FileData"}}

    def show(self, files: list[dict] | None = None, photo: dict | None = None, sketch: dict | None = None,
             **controls: object) -> list[Row]:  # fmt: skip
        """The page's rows for these box values and controls (the defaults unless given)."""
        data = [files, photo, sketch, *{**CONTROLS, **controls}.values()]
        response = self.http.post(f"{self.url}/gradio_api/call/show", json={"data": data})
        response.raise_for_status()
        event = response.json()["event_id"]
        with self.http.stream("GET", f"{self.url}/gradio_api/call/show/{event}") as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: ") and kind in ("complete", "error"):
                    payload = json.loads(line[len("data: ") :])
                    if kind == "error":
                        raise PageError(str(payload))
                    return parse_rows(payload[0])
        raise PageError("the event stream ended without a result")


class PageError(Exception):
    """The page answered an event with an error (Gradio's toast)."""


def sketch_value(composite: dict) -> dict:
    """The sketchpad's value with `composite` as the flattened drawing (one layer drawn)."""
    return {"background": None, "layers": [composite], "composite": composite, "id": None}


def parse_rows(page: str) -> list[Row]:
    """The rows of the page's results HTML (fashion_lab.app.rows_html)."""
    rows = []
    for row in re.findall(r'<div class="picture">(.*?)</div>(?=<div class="picture">|$)', page, re.S):
        image = re.search(r'src="data:image/png;base64,([^"]+)"', row)
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(image.group(1))))) if image else None
        if (
            m := re.search(r'<p class="unreadable">⚠ <b>(.*?)</b> could not be read: (.*?)</p>', row, re.S)
        ) is not None:
            rows.append(Row(unescape(m.group(1)), error=unescape(m.group(2))))
        elif (m := re.search(r'<p class="no-object"><b>(.*?)</b>', row, re.S)) is not None:
            rows.append(Row(unescape(m.group(1)), no_object=True, image=shown))
        else:
            name = re.search(r'<p class="name">(.*?)</p>', row, re.S).group(1)
            bars = re.findall(r'<dt>(.*?)</dt><dd><meter min="0" max="1" value="([^"]+)">', row, re.S)
            rows.append(Row(unescape(name), {unescape(c): float(p) for c, p in bars}, image=shown))
    return rows


def unescape(text: str) -> str:
    import html

    return html.unescape(text)


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid` in MiB (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
