"""``mess run``: run a tailored ONNX model on one image (onnxruntime + Pillow, no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from mess.cli._app import UserError, app


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class (Pascal VOC's bit-interleaved palette), uint8 ``[256, 3]``."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def run_model(model: Path, image: Path, mask: Path | None = None) -> dict[str, Any]:
    """Run ``model`` on ``image`` (resized to the model's input size).

    Returns:
        ``{"exit": k, "configuration": {...}, "classes": [...pixel counts per class...]}``.
    """
    import onnxruntime as ort
    from PIL import Image, UnidentifiedImageError

    if not model.is_file():
        raise UserError(f"{model}: no such file")
    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UserError(f"{model}: not a valid ONNX model ({exc.__class__.__name__})") from None
    shape = session.get_inputs()[0].shape
    h, w = int(shape[2]), int(shape[3])
    try:
        rgb = Image.open(image).convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{image}: cannot read the image ({exc.__class__.__name__})") from None
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    x = (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
    logits, exit_index = session.run(["logits", "exit"], {"image": x})
    labels = logits[0].argmax(axis=0).astype(np.uint8)
    if mask is not None:
        out = Image.fromarray(labels, mode="P")
        out.putpalette(palette(logits.shape[1]).reshape(-1).tolist())
        out.save(mask)
    meta = session.get_modelmeta().custom_metadata_map
    config = json.loads(meta.get("mess.configuration", "null"))
    counts = np.bincount(labels.reshape(-1), minlength=logits.shape[1])
    return {"exit": int(exit_index), "configuration": config, "classes": counts.tolist()}


@app.command("run")
def run_command(
    model: Annotated[Path, typer.Argument(help="Tailored ONNX model (mess assemble / query).")],
    image: Annotated[Path, typer.Argument(help="RGB image (PNG/JPEG), resized to the model.")],
    mask: Annotated[
        Path | None, typer.Option("-o", "--output", help="Colour mask PNG to write.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a tailored model on one image: print the exit taken, write a colour mask.

    Example: mess run model.onnx street.png -o mask.png
    """
    result = run_model(model, image, mask)
    if as_json:
        typer.echo(json.dumps(result))
        return
    exits = (result["configuration"] or {}).get("exits", [])
    where = "terminal" if result["exit"] == len(exits) else exits[result["exit"]]["id"]
    typer.echo(f"exit {result['exit']} ({where})" + (f"; mask written to {mask}" if mask else ""))
