"""A page on this machine for your own pictures: drop, paste, photograph or draw one; see what the model saw and
what it thinks. Gradio is an optional extra: pip install -e ".[app]".

python -m fashion_lab.app --ckpt_path last                   # the newest run's last.ckpt, on http://127.0.0.1:7860
python -m fashion_lab.app --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --port 8000
fashion-lab-app --ckpt_path last                             # the same command
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jsonargparse import Namespace
from torch.utils.data import DataLoader

# The CLI's own checkpoint handling, so that the page accepts and refuses exactly what `predict` does.
from fashion_lab.cli import CheckpointError, read_checkpoint
from fashion_lab.cli.checkpoints import CKPT_FIX, resolve_ckpt_path
from fashion_lab.cli.user_errors import exit_on_user_error
from fashion_lab.data import ImageFiles, keep_batch, training_scaling
from fashion_lab.errors import ConfigError, check, positive_integer
from fashion_lab.model import MLPClassifier
from fashion_lab.pictures import MAX_PIXELS, InvertMode, PictureError, prepare, read_grey

SHOWN_SCALE = 8  # the 28×28 drawn 224×224, each pixel a block: the model's pixels, not the browser's smoothing


@dataclass
class Seen:
    """One picture: the uint8 (28, 28) the model received and its probability per class, or why it was unreadable."""

    name: str
    image: np.ndarray | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None


def resolve(ckpt_path: str) -> str:
    """`last` = the newest run's last.ckpt, and a missing file refused, with the CLI's own words.

    Through the CLI's own `resolve_ckpt_path`, which reads only these fields of a predict config (the default
    logger: runs in ./lightning_logs).
    """
    config = Namespace(ckpt_path=ckpt_path, output=None, trainer=Namespace(logger=None, default_root_dir=None))
    resolve_ckpt_path(config, "predict")
    return config.ckpt_path


def load(ckpt_path: str) -> tuple[MLPClassifier, dict[str, float], str]:
    """The model (eval mode, CPU), its training data's scaling and the resolved path; CheckpointError if unfit."""
    path = resolve(ckpt_path)
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
    """Each (name, path) through `predict`'s steps: read_grey, prepare, the checkpoint's scaling, predict_step."""
    seen = []
    for name, path in pictures:
        try:
            seen.append(Seen(name, prepare(read_grey(Path(path), max_pixels), invert, crop, threshold, margin)))
        except PictureError as e:
            seen.append(Seen(name, error=str(e)))
    readable = [s for s in seen if s.error is None]
    if readable:
        images = ImageFiles(torch.from_numpy(np.stack([s.image for s in readable])), [s.name for s in readable], [])
        images.mean, images.std = scaling["mean"], scaling["std"]
        batch = next(iter(DataLoader(images, batch_size=len(images), collate_fn=keep_batch)))
        with torch.inference_mode():
            probabilities = model.predict_step(batch, 0)
        for s, p in zip(readable, probabilities.tolist(), strict=True):
            s.probabilities = dict(zip(model.class_names, p, strict=True))
    return seen


def page(model: MLPClassifier, scaling: dict[str, float], ckpt: str, top_k: int, max_pixels: int):
    """The Gradio Blocks: three ways in, the preprocessing controls, and one row per picture."""
    import gradio as gr

    names = model.class_names
    with gr.Blocks(title="fashion_lab: what the model sees", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## What the model sees\n`{ckpt}`: {len(names)} classes ({', '.join(names[:10])}"
            f"{', …' if len(names) > 10 else ''}). Each picture gets `predict`'s preprocessing; "
            "the model sees the 28×28 on the left of its row."
        )
        with gr.Row(equal_height=True):
            files = gr.File(label="Pictures (drop one or many here)", file_count="multiple", elem_id="pictures")
            photo = gr.Image(
                label="Webcam, or paste a picture", sources=["webcam", "clipboard", "upload"], type="filepath",
                format="png", elem_id="photo",
            )  # fmt: skip
            sketch = gr.Sketchpad(
                label="Draw (dark on white)", type="filepath", format="png", canvas_size=(336, 336),
                brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"), elem_id="sketch",
            )  # fmt: skip
        with gr.Row():
            invert = gr.Radio(["auto", "always", "never"], value="auto", label="invert (auto: if the border is light)")
            crop = gr.Checkbox(value=True, label="crop to the object")
            threshold = gr.Slider(0.0, 0.95, value=0.15, step=0.01, label="threshold (object vs background)")
            margin = gr.Slider(0, 13, value=0, step=1, label="margin (black pixels around)")

        @gr.render(inputs=[files, photo, sketch, invert, crop, threshold, margin])
        def results(files, photo, sketch, invert, crop, threshold, margin) -> None:
            pictures = [(Path(f).name, f) for f in files or []]  # Gradio keeps an upload's own file name
            pictures += [("webcam or pasted picture", photo)] if photo else []
            if sketch and sketch.get("layers") and sketch.get("composite"):  # flattened on white, as drawn
                pictures.append(("your drawing", sketch["composite"]))
            for s in look(pictures, model, scaling, invert, crop, threshold, int(margin), max_pixels):
                with gr.Row(elem_classes="picture"):
                    if s.error is not None:
                        reason = f"<b>{html.escape(s.name)}</b> could not be read: {html.escape(s.error)}"
                        gr.HTML(f'<p class="unreadable">⚠ {reason}</p>')
                        continue
                    shown = s.image.repeat(SHOWN_SCALE, 0).repeat(SHOWN_SCALE, 1)
                    size = {"height": 28 * SHOWN_SCALE, "width": 28 * SHOWN_SCALE, "scale": 0}
                    gr.Image(shown, label="28×28", format="png", buttons=[], elem_classes="seen", **size)
                    gr.Label(s.probabilities, num_top_classes=top_k, label=s.name, elem_classes="prediction")

    return demo


def serve(
    ckpt_path: str, host: str = "127.0.0.1", port: int = 7860, top_k: int = 5, max_pixels: int = MAX_PIXELS
) -> None:
    """Serve the page for a checkpoint until Ctrl+C; the checkpoint is checked before the server starts.

    Args:
        ckpt_path: a .ckpt that fit wrote, or `last` for the newest run's last.ckpt (as the CLI resolves it).
        host: the address to listen on; 127.0.0.1 keeps the page on this machine.
        port: the port to listen on.
        top_k: classes shown per picture, most probable first.
        max_pixels: larger pictures are refused unread, as possible decompression bombs (as --data.max_pixels).
    """
    check(
        [
            ("port", port, isinstance(port, int) and 0 < port < 65536, "1..65535"),
            positive_integer("top_k", top_k),
            positive_integer("max_pixels", max_pixels),
        ]
    )
    model, scaling, path = load(ckpt_path)
    # Set before Gradio is imported, which reads it: no telemetry and no version check leave the machine.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio  # noqa: F401
    except ImportError as e:
        raise ConfigError("the page needs Gradio, an optional extra. Fix: pip install -e '.[app]'.") from e
    demo = page(model, scaling, path, min(top_k, len(model.class_names)), max_pixels)
    try:  # share=False: no public tunnel; Gradio's own fonts and scripts come from this server, not a CDN
        demo.launch(server_name=host, server_port=port, share=False, quiet=True, prevent_thread_lock=True)
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        raise ConfigError(
            f"cannot serve on {host}:{port} ({e}). Fix: pass another --port, or a --host of this machine."
        ) from e
    print(f"Serving {path} on {demo.local_url} (Ctrl+C stops)", flush=True)
    demo.block_thread()


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
