"""A page on this machine for your own pictures: drop, paste, photograph or draw one; see what the model saw and
what it thinks. Gradio is an optional extra: pip install -e ".[app]".

python -m fashion_lab.app --ckpt_path last                   # the newest run's last.ckpt, on http://127.0.0.1:7860
python -m fashion_lab.app --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --port 8000
fashion-lab-app --ckpt_path last                             # the same command
"""

from __future__ import annotations

import base64
import contextlib
import errno
import html
import io
import ipaddress
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

# The checkpoint handling of the CLI, so that the page accepts and refuses exactly what `predict` does.
from fashion_lab.checkpoints import CKPT_FIX, CheckpointError, read_checkpoint, resolve, training_scaling
from fashion_lab.cli.signals import StopSignals
from fashion_lab.cli.user_errors import exit_on_user_error
from fashion_lab.datasets import keep_batch
from fashion_lab.errors import ConfigError, check, positive_integer
from fashion_lab.model import MLPClassifier
from fashion_lab.picture_files import ImageFiles
from fashion_lab.pictures import MAX_PIXELS, NO_OBJECT, InvertMode, PictureError, no_object, prepare, read_grey

SHOWN_SCALE = 8  # the 28×28 drawn 224×224, each pixel a block
# Gradio keeps a copy of the page's state for each of this many recent sessions (its default: 10,000, tens of KB each,
# never freed while the server runs). The page holds nothing between events, so an evicted session loses nothing.
SESSIONS_KEPT = 100


@dataclass
class Seen:
    """One picture: the uint8 (28, 28) the model received and its probability per class (None when it shows no
    object), or why it was unreadable."""

    name: str
    image: np.ndarray | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None


def load(ckpt_path: str) -> tuple[MLPClassifier, dict[str, float], str]:
    """The model (eval mode, CPU), its training data's scaling and the resolved path; CheckpointError if unfit."""
    path = resolve(ckpt_path, Path("lightning_logs"))  # `last`: the newest run of the CLI's default logger
    checkpoint = read_checkpoint(path)  # weights-only, and a file that fit did not write is refused with its name
    try:
        model = MLPClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except Exception as e:  # Lightning's refusals (foreign classes), torch's shape mismatches: none name the file
        raise CheckpointError(f"checkpoint {path} is not an MLPClassifier ({type(e).__name__}: {e}). {CKPT_FIX}") from e
    return model.eval(), training_scaling(checkpoint), path


def look(
    pictures: list[tuple[str, str]],
    model: MLPClassifier,
    scaling: dict[str, float],
    invert: InvertMode = "auto",
    crop: bool = True,
    threshold: float = 0.15,
    margin: int = 0,
    max_pixels: int = MAX_PIXELS,
) -> list[Seen]:
    """Each (name, path) through `predict`'s steps: read_grey, prepare, the checkpoint's scaling, predict_step; a
    picture with no object gets no probabilities, as `predict` writes no class for it."""
    seen = []
    for name, path in pictures:
        try:
            seen.append(Seen(name, prepare(read_grey(Path(path), max_pixels), invert, crop, threshold, margin)))
        except PictureError as e:
            seen.append(Seen(name, error=str(e)))
    readable = [s for s in seen if s.error is None and not no_object(s.image)]
    if readable:
        images = ImageFiles(torch.from_numpy(np.stack([s.image for s in readable])), [s.name for s in readable], [])
        images.mean, images.std = scaling["mean"], scaling["std"]
        batch = next(iter(DataLoader(images, batch_size=len(images), collate_fn=keep_batch)))
        with torch.inference_mode():
            probabilities = model.predict_step(batch, 0)
        for s, p in zip(readable, probabilities.tolist(), strict=True):
            s.probabilities = dict(zip(model.class_names, p, strict=True))
    return seen


def rows_html(seen: list[Seen], top_k: int) -> str:
    """One row per picture: its 28×28 and top classes, why it could not be read, or that it shows no object."""
    rows = []
    for s in seen:
        name = html.escape(s.name)
        if s.error is not None:
            rows.append(f'<div class="picture"><p class="unreadable">⚠ <b>{name}</b> could not be read: '
                        f"{html.escape(s.error)}</p></div>")  # fmt: skip
            continue
        image = f'<img class="seen" alt="the 28×28 the model saw" src="{png_data_url(s.image)}">'
        if s.probabilities is None:
            rows.append(f'<div class="picture">{image}<p class="no-object"><b>{name}</b>: {NO_OBJECT} (nothing '
                        "stands out from the background by more than the threshold)</p></div>")  # fmt: skip
            continue
        top = sorted(s.probabilities.items(), key=lambda item: item[1], reverse=True)[:top_k]
        bars = "".join(
            f'<dt>{html.escape(c)}</dt><dd><meter min="0" max="1" value="{p!r}"></meter> {p:.1%}</dd>' for c, p in top
        )
        rows.append(f'<div class="picture">{image}<div class="prediction"><p class="name">{name}</p>'
                    f'<p class="top">{html.escape(top[0][0])}</p><dl>{bars}</dl></div></div>')  # fmt: skip
    return "".join(rows)


def png_data_url(image: np.ndarray) -> str:
    """A uint8 (28, 28) as an inline PNG: no file in Gradio's cache, nothing kept after the page shows it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def uploaded(files: list[dict] | None, photo: dict | None, sketch: dict | None) -> list[tuple[str, str]]:
    """(name, path on the server) of each picture in the three boxes' raw values: Gradio's upload cache paths, which
    nothing has decoded. An upload keeps its own file name (a basename: the page shows it)."""
    pictures = [(Path(f.get("orig_name") or f["path"]).name, f["path"]) for f in files or []]
    pictures += [("webcam or pasted picture", photo["path"])] if photo else []
    if sketch and sketch.get("layers") and sketch.get("composite"):  # flattened on white, as drawn
        pictures.append(("your drawing", sketch["composite"]["path"]))
    return pictures


def page(model: MLPClassifier, scaling: dict[str, float], ckpt: str, top_k: int, max_pixels: int, cache_age: int):
    """The Gradio Blocks: three ways in, the preprocessing controls, and one HTML output with a row per picture.

    Events run with preprocess=False: Gradio passes the uploads' paths and never decodes a picture itself, so every
    picture, whichever box it came through, meets `predict`'s own reading and pixel limit first. The results are one
    fixed output (not gr.render, which keeps every rendered row of every session in the server's memory).
    """
    import gradio as gr

    names = model.class_names
    # Every cache_age/4 s, Gradio deletes the uploads this page received more than cache_age s ago.
    with gr.Blocks(
        title="fashion_lab: what the model sees",
        analytics_enabled=False,
        delete_cache=(max(1, cache_age // 4), cache_age),
    ) as demo:
        gr.Markdown(
            f"## What the model sees\n`{ckpt}`: {len(names)} classes ({', '.join(names[:10])}"
            f"{', …' if len(names) > 10 else ''}). Each picture gets `predict`'s preprocessing; "
            "the model sees the 28×28 on the left of its row."
        )
        with gr.Row(equal_height=True):
            files = gr.File(label="Pictures (drop one or many here)", file_count="multiple", elem_id="pictures")
            photo = gr.Image(
                label="Webcam, or paste a picture", sources=["webcam", "clipboard", "upload"], type="filepath",
                elem_id="photo",
            )  # fmt: skip
            sketch = gr.Sketchpad(
                label="Draw (dark on white)", type="filepath", canvas_size=(336, 336),
                brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"), elem_id="sketch",
            )  # fmt: skip
        with gr.Row():
            invert = gr.Radio(["auto", "always", "never"], value="auto", label="invert (auto: if the border is light)")
            crop = gr.Checkbox(value=True, label="crop to the object")
            threshold = gr.Slider(0.0, 0.95, value=0.15, step=0.01, label="threshold (object vs background)")
            margin = gr.Slider(0, 13, value=0, step=1, label="margin (black pixels around)")
        results = gr.HTML(elem_id="results", js_on_load=None, css_template=RESULTS_CSS)

        def show(files, photo, sketch, invert, crop, threshold, margin) -> str:
            try:  # the controls' raw values, which Gradio's preprocessing would have checked
                check_controls(invert, crop, threshold, margin)
            except ConfigError as e:
                raise gr.Error(str(e)) from None  # a toast; no traceback in the log
            seen = look(
                uploaded(files, photo, sketch), model, scaling, invert, crop, threshold, int(margin), max_pixels
            )
            return rows_html(seen, top_k)

        inputs = [files, photo, sketch, invert, crop, threshold, margin]
        gr.on(
            [c.change for c in inputs], show, inputs, results, preprocess=False, trigger_mode="always_last",
            api_name="show",
        )  # fmt: skip
    return demo


# The result rows: the 28×28 drawn 8× with square pixels (the model's pixels, not the browser's smoothing) beside
# the top classes as bars.
RESULTS_CSS = f"""
.picture {{ display: flex; gap: 1.5em; align-items: center; margin: 0.75em 0; }}
.seen {{ width: {28 * SHOWN_SCALE}px; height: {28 * SHOWN_SCALE}px; image-rendering: pixelated; flex: none; }}
.prediction .name {{ font-size: 0.9em; opacity: 0.7; margin: 0; }}
.prediction .top {{ font-size: 1.6em; font-weight: 600; margin: 0.1em 0 0.4em; }}
.prediction dl {{ display: grid; grid-template-columns: 8em 16em; gap: 0.3em 1em; margin: 0; }}
.prediction dd {{ margin: 0; }}
.prediction meter {{ width: 10em; }}
.unreadable, .no-object {{ margin: 0; }}
"""


def check_controls(invert: str, crop: bool, threshold: float, margin: float) -> None:
    """The preprocessing controls as `predict` allows them (a client can send any value to the page's API)."""
    number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    whole = isinstance(margin, int | float) and not isinstance(margin, bool) and float(margin).is_integer()
    check(
        [
            ("invert", invert, invert in ("auto", "always", "never"), "'auto', 'always', 'never'"),
            ("crop", crop, isinstance(crop, bool), "true or false"),
            ("threshold", threshold, number and 0.0 <= threshold < 1.0, "0 <= threshold < 1"),
            ("margin", margin, whole and 0 <= margin <= 13, "an integer 0..13"),
        ]
    )  # fmt: skip


def serve(
    ckpt_path: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    top_k: int = 5,
    max_pixels: int = MAX_PIXELS,
    max_file_size: str = "50MB",
    cache_age: int = 3600,
    auth: str | None = None,
) -> None:
    """Serve the page for a checkpoint until Ctrl+C; the checkpoint and the address are checked before it starts.

    Args:
        ckpt_path: a .ckpt that fit wrote, or `last` for the newest run's last.ckpt (as the CLI resolves it).
        host: the address to listen on; 127.0.0.1 keeps the page on this machine, 0.0.0.0 opens it to the network.
        port: the port to listen on.
        top_k: classes shown per picture, most probable first.
        max_pixels: larger pictures are refused unread, as possible decompression bombs (as --data.max_pixels).
        max_file_size: larger uploads are refused before they are stored ("50MB", "500KB", ...; Gradio's limit).
        cache_age: seconds that uploads are kept on the server; all of them are deleted when it stops.
        auth: "user:password" asks for a login (Gradio's own); without it anyone who reaches the address can use it.
    """
    check(
        [
            ("port", port, isinstance(port, int) and 0 < port < 65536, "1..65535"),
            positive_integer("top_k", top_k),
            positive_integer("max_pixels", max_pixels),
            ("max_file_size", max_file_size, file_size(max_file_size) is not None, 'a size such as "50MB" or "500KB"'),
            positive_integer("cache_age", cache_age),
            ("auth", "…" if auth else auth, auth is None or (":" in auth and auth.index(":") > 0), '"user:password"'),
        ]
    )
    model, scaling, path = load(ckpt_path)
    listen(host, port)
    # Set before Gradio is imported, which reads them: no telemetry and no version check leave the machine, and
    # every file Gradio writes goes to the page's own folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    with page_cache():
        try:
            import gradio  # noqa: F401
        except ImportError as e:
            raise ConfigError("the page needs Gradio, an optional extra. Fix: pip install -e '.[app]'.") from e
        demo = page(model, scaling, path, min(top_k, len(model.class_names)), max_pixels, cache_age)
        # share=False: no public tunnel; Gradio's own fonts and scripts come from this server, not a CDN
        demo.launch(
            server_name=host, server_port=port, share=False, quiet=True, prevent_thread_lock=True,
            max_file_size=file_size(max_file_size), auth=tuple(auth.split(":", 1)) if auth else None,
            state_session_capacity=SESSIONS_KEPT,
        )  # fmt: skip
        for line in addresses_note(host, port, auth is not None):
            print(line, flush=True)
        print(f"Serving {path} (Ctrl+C stops)", flush=True)
        with StopSignals():  # SIGTERM as Ctrl+C: Gradio closes the server, then the cache is emptied
            demo.block_thread()


def file_size(size: str) -> int | None:
    """Bytes in "50MB", "500KB", "2GB" or "1000B" (Gradio's units, powers of 1024); None if unreadable."""
    found = re.fullmatch(r"\s*(\d+)\s*(B|KB|MB|GB|TB)\s*", str(size), re.IGNORECASE)
    if found is None or int(found.group(1)) == 0:
        return None
    return int(found.group(1)) * 1024 ** ["B", "KB", "MB", "GB", "TB"].index(found.group(2).upper())


@contextmanager
def page_cache() -> Iterator[Path]:
    """A fresh folder for Gradio's uploads (inside $GRADIO_TEMP_DIR if set), removed with all it holds on exit.

    Gradio deletes the files it tracks when it stops, but leaves their folders and any file it did not track.
    """
    previous = os.environ.get("GRADIO_TEMP_DIR")
    folder = Path(tempfile.mkdtemp(prefix="fashion-lab-page-", dir=previous or None))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # read by Gradio's Blocks and its upload route when they start
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def listen(host: str, port: int) -> None:
    """Refuse, in our words, an address that the server could not listen on: before Gradio and uvicorn try it."""
    fix = "Fix: pass --host 127.0.0.1 (this machine only), 0.0.0.0 (every network) or an address of this machine."
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"host={host!r} is not an address or a known host name ({e.strerror}). {fix}") from e
    with socket.socket(family, kind) as probe:
        probe.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as uvicorn binds: a closed port's TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is in use by another program. Fix: pass another --port (e.g. --port "
                    f"{port + 1 if port < 65535 else 7860}), or stop the program that listens there."
                ) from e
            if e.errno == errno.EACCES:
                raise ConfigError(f"port={port} needs administrator rights (below 1024). Fix: pass --port 7860.") from e
            raise ConfigError(f"cannot listen on host={host!r}: {e.strerror}. {fix}") from e


def addresses_note(host: str, port: int, login: bool) -> list[str]:
    """Where the page can be opened, and for an address other than this machine's loopback, one warning line."""
    local = {"127.0.0.1", "::1", "localhost"}
    resolved = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in resolved):
        return [f"The page: http://{'127.0.0.1' if host in local else host}:{port}/"]
    shown = network_addresses() if host in ("0.0.0.0", "::", "") else [host]
    urls = ", ".join(f"http://{f'[{a}]' if ':' in a else a}:{port}/" for a in shown)
    who = "anyone on the network who has the --auth password" if login else "anyone on the network, with no login"
    return [
        f"The page: {urls}",
        f"warning: --host {host} makes the page reachable by {who} (plain HTTP). "
        "--host 127.0.0.1 keeps it on this machine" + ("." if login else "; --auth user:password adds a login."),
    ]


def network_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses: its host name's, and the one its default route leaves from."""
    found = set()
    with contextlib.suppress(OSError):
        found |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))  # a documentation address: connecting a UDP socket sends nothing
        found.add(udp.getsockname()[0])
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback) or ["<this machine's address>"]


def main(args: list[str] | None = None) -> None:
    """`python -m fashion_lab.app --ckpt_path ...`: a mistake prints the CLI's one `error:` line and exits 1."""
    from jsonargparse import auto_cli

    try:
        auto_cli(serve, args=args, as_positional=False, prog="python -m fashion_lab.app")
    except Exception as e:
        exit_on_user_error(e)
        raise


if __name__ == "__main__":
    main()
