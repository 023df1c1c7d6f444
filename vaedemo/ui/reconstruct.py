"""The Reconstruct tab: give a digit (draw, upload, example), see it encoded and rebuilt, scored and placed."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gradio as gr
import numpy as np
from PIL import Image

from .. import exports, inference, plots, zerogpu
from ..images import BlankImageError
from ..inference import browser
from ..validation import within
from .components import DigitImage, PictureOut, checkpoint_dropdown
from .live import live_html
from .shared import (
    NONE_CHOICE,
    SPRITE_COLS,
    STATIC_ROUTE,
    Outputs,
    bundled_thumb,
    digit,
    error_image,
    friendly,
    info,
    need,
    refresh_checkpoint,
    refresh_compare,
    sprite_thumbs,
    strip,
)

EXAMPLES_PER_CLASS = 2
BRUSH_SIZE = 18  # the sketchpad brush's radius in its 280 x 280 pixels (live_sketch.js paints the same)
CONCURRENCY = 2  # uploads reconstructed at once (the Space has 2 CPU cores)
NO_LIKELIHOOD = "— (an implicit model defines no p(x): it only samples)"
GAN_NOTE = (
    "A GAN has no encoder of its own: its “reconstruction” is a search for the nearest digit its "
    "generator can make (an inverter's guess, refined by a few steps of optimisation)."
)
SAMPLES_CAPTION = "Other decodes of z ~ q(z|x): how unsure the VAE is about this digit"
EMPTY_NOTE = (
    "**No trained models yet.** Train one in the Train tab, or put checkpoint folders in "
    "`checkpoints/` (`make checkpoints` trains the standard set)."
)


def _score_cells(r: inference.Reconstruction, about: dict) -> dict[str, str]:
    cells = {
        "Model": f"**{about['name']}** ({about['kind_label']}, latent {about['latent_dim']})",
        "Error per pixel (MSE)": f"{r.mse:.4f}",
        "Cross-entropy −log p(x\\|z), nats": f"{r.bce_nats:.1f}",
        "−ELBO, nats (lower = more typical)": "— (an AE has no probability model)",
    }
    if about.get("implicit"):
        cells["−ELBO, nats (lower = more typical)"] = NO_LIKELIHOOD
        cells["How typical"] = NO_LIKELIHOOD
        cells["Posterior μ ± σ"] = "— (a GAN has no posterior; the code is the inverted z)"
    if r.neg_elbo is not None:
        cells["−ELBO, nats (lower = more typical)"] = f"{r.neg_elbo:.1f}"
    if r.elbo_percentile is not None:
        p = r.elbo_percentile
        verdict = "unusual for this model" if p >= 95 else "typical" if p <= 75 else "a bit unusual"
        cells["How typical"] = f"−ELBO higher than for {p:.0f}% of validation digits: **{verdict}**"
    if r.label_used is not None:
        names = about.get("class_names") or []
        name = names[r.label_used] if r.label_used < len(names) else r.label_used
        cells["Label given to the CVAE"] = f"{name} (the one it finds most likely)"
    return cells


def scores_md(*results: tuple[inference.Reconstruction, dict]) -> str:
    """A table of scores, one column per model (two when comparing)."""
    columns = [_score_cells(r, about) for r, about in results]
    rows = list(dict.fromkeys(k for c in columns for k in c))
    head = "| Score | " + " | ".join(["This model", "Compared with"][: len(columns)]) + " |\n"
    head += "|---" * (len(columns) + 1) + "|\n"
    table = head + "\n".join(f"| {k} | " + " | ".join(c.get(k, "—") for c in columns) + " |" for k in rows)
    if any(about.get("implicit") for _, about in results):
        table += "\n\n" + GAN_NOTE
    return table


def panel(r: inference.Reconstruction, compared: tuple[inference.Reconstruction, dict] | None = None) -> Image.Image:
    """Input, reconstruction, the compared model's reconstruction (if any) and the error map, side by side and
    captioned, and under them a VAE's other decodes of z ~ q(z|x): one picture, so a call sends one file
    rather than five (each file is a download of its own for a gradio_client caller)."""
    tiles, captions = [digit(r.input), digit(r.recon)], ["Input, as the model sees it", "Reconstruction"]
    if compared is not None:
        c, cabout = compared
        tiles.append(digit(c.recon))
        captions.append(f"{cabout['name']} ({cabout['kind_label']})")
    tiles.append(error_image(r.error_map))
    captions.append("Error map")
    top = exports.captioned_row(tiles, captions)
    if not len(r.samples):
        return top
    decodes = exports.captioned_row([strip(r.samples)], [SAMPLES_CAPTION])
    return exports.stack([top, decodes])


def view(x: np.ndarray, checkpoint: Any, compare_with: Any) -> dict:
    """Everything the tab shows for input ``x`` (28, 28), by output name."""
    about = info(checkpoint)
    r = inference.reconstruct(x, checkpoint, n_samples=8)
    results = [(r, about)]
    if compare_with:
        results.append((inference.reconstruct(x, compare_with, n_samples=0), info(compare_with)))
    code = (
        plots.code_bars(r.mu, None, title="The code: z found by inversion")
        if about.get("implicit")
        else plots.code_bars(r.mu, r.sigma)
    )
    code.update_layout(height=300, margin=dict(t=40, b=40))
    if len(r.mu) > 32:  # hundreds of bars: thin error bars, or they merge into one dark block
        code.update_traces(error_y_thickness=0.6, error_y_width=0, marker_line_width=0)
    return {
        "panel": panel(r, results[1] if len(results) > 1 else None),
        "scores": scores_md(*results),
        "code": code,
        "neighbours": sprite_thumbs([(i, f"{label} · {d:.2f}") for i, label, d in r.neighbours]),
        "here": r.input,
    }


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct(image, checkpoint, compare_with=""):
    """/reconstruct: an uploaded digit → one picture (input as the model sees it, reconstruction, error map,
    a VAE's other decodes), the scores, the code and the nearest dataset digits."""
    if image is None:
        raise ValueError("Upload an image of a digit first (PNG, JPEG, GIF, BMP or WebP).")
    return view(inference.digit_input(image), need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_sketch(sketch, checkpoint, compare_with=""):
    """The sketchpad: a blank canvas (e.g. just cleared) leaves the results as they are."""
    try:
        x = inference.digit_input(sketch)
    except BlankImageError:
        return {}
    return view(x, need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_example(checkpoint, compare_with, evt: gr.SelectData):
    index = example_indices()[within(evt.index, "The example", 0, len(example_indices()) - 1)]
    return view(inference.digit_input(index), need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_again(here, checkpoint, compare_with=""):
    """The model changed: redo the last input, or before the first one the example the page opened with."""
    if not checkpoint:
        return {}
    if here is None:
        return first_view(checkpoint, compare_with)
    return view(np.asarray(here, np.float32), checkpoint, compare_with)


@functools.lru_cache(maxsize=1)
def example_indices() -> list[int]:
    labels = inference.bundled()[1]
    return [int(i) for c in range(10) for i in np.flatnonzero(labels == c)[:EXAMPLES_PER_CLASS]]


def example_gallery() -> list[tuple[Image.Image, str]]:
    labels = inference.bundled()[1]
    return [(bundled_thumb(i), str(labels[i])) for i in example_indices()]


def first_view(checkpoint: str | None, compare_with: Any = "") -> dict:
    """What a new visitor sees before giving a digit: the first example reconstructed (not "their" digit)."""
    if not checkpoint:
        return {"scores": EMPTY_NOTE}
    shown = view(inference.digit_input(example_indices()[0]), checkpoint, compare_with)
    del shown["here"]  # an example is not "your digit": leave the state empty
    return shown


def live_payload(checkpoint: Any) -> str | None:
    """What live_sketch.js needs to follow the sketchpad's strokes with ``checkpoint`` (None: nothing to follow):
    the model as the page runs it (``browser.browser_model``), the brush, and where the digit sprite and the
    bundled digits' codes are. A model without an encoder the page can run (a GAN) is followed by the server."""
    if not checkpoint:
        return None
    try:
        model = browser.browser_model(str(checkpoint))
    except ValueError:
        return None
    name = quote(model["name"], safe="")
    return json.dumps({
        "checkpoint": model["name"],
        "model": model,
        "brush": BRUSH_SIZE,
        "sprite": f"{STATIC_ROUTE}/digits.png",
        "sprite_cols": SPRITE_COLS,
        "codes_url": f"{STATIC_ROUTE}/codes/{name}.bin?v={model['version']}",
        "why": None if model["encoder"] else "a GAN's encoding is a search only the server runs",
    })


@zerogpu.gpu("reconstruct")
def reconstruct_live(request: Any) -> dict:
    """The live sketch's answer where the page cannot run the model: ``{"checkpoint", "pixels": 784 numbers in
    [0, 1], the digit as live_sketch.js framed it}`` → the reconstruction, the code and the nearest digits.
    (A gr.HTML server function takes one argument.)"""
    request = request if isinstance(request, dict) else {}
    try:
        x = np.asarray(request.get("pixels"), np.float64)
        if x.shape != (784,) or not np.isfinite(x).all():
            raise ValueError("Send the framed digit as 784 numbers between 0 and 1.")
        x = np.clip(x, 0.0, 1.0).astype(np.float32).reshape(28, 28)
        r = inference.reconstruct(x, need(request.get("checkpoint")), n_samples=0)
    except (ValueError, TypeError) as e:
        raise gr.Error(str(e)) from None
    return {
        "recon": np.round(r.recon.reshape(-1).astype(np.float64), 4).tolist(),
        "mu": r.mu.astype(np.float64).tolist(),
        "sigma": None if r.sigma is None else r.sigma.astype(np.float64).tolist(),
        "neighbours": [[i, label, d] for i, label, d in r.neighbours],
        "label": r.label_used,
    }


def live_sketch() -> gr.HTML:
    """The panel under the sketchpad that follows the stroke while it is drawn (live_sketch.html / .js)."""
    return live_html("live_sketch", "rec-live", reconstruct_live)


@dataclass
class ReconstructTab:
    model: gr.Dropdown
    compare: gr.Dropdown
    outputs: Outputs
    live: gr.HTML


FIRST = ("panel", "scores", "here")  # what a new digit shows first: the reconstruction and its scores


def staged(fn):
    """A handler that answers in two steps: the reconstruction and its scores first, then everything (the
    code plot and the neighbours too). The page draws the picture before it lays out the code's Plotly
    figure, which takes it tens of ms for a 200-dimensional code; a gradio_client caller still gets every
    output, from the last step. One computation: the second step resends the same picture (the same file
    in Gradio's cache), which the page does not fetch again."""

    @functools.wraps(fn)
    def gen(*args, **kwargs):
        values = fn(*args, **kwargs)
        first = {k: v for k, v in values.items() if k in FIRST}
        if first and len(first) < len(values):
            yield first
        yield values

    return gen


def render(tab: gr.Tab, options: list[tuple[str, str]], here: gr.State) -> ReconstructTab:
    """Build the tab's components inside ``tab`` (the current gr.Tab) and wire its events."""
    private = {"api_visibility": "private"}
    with gr.Row():
        rec_ck = checkpoint_dropdown(
            options, "Model", "Which trained model encodes and decodes your digit.", elem_id="rec-checkpoint"
        )
        cmp_ck = checkpoint_dropdown(
            [NONE_CHOICE, *options],
            "Compare with",
            "Pick a second model (e.g. an AE next to a VAE) to see both on the same input.",
            elem_id="rec-compare",
            value="",
        )
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            gr.Markdown("### 1 · Give a digit")
            with gr.Tabs():
                with gr.Tab("Draw", id="draw"):
                    sketch = gr.Sketchpad(
                        label="Draw a digit (one stroke or several)",
                        type="numpy",
                        image_mode="RGBA",
                        format="png",
                        canvas_size=(280, 280),
                        brush=gr.Brush(default_size=BRUSH_SIZE, colors=["#000000"], color_mode="fixed"),
                        layers=False,
                        transforms=(),
                        elem_id="rec-sketch",
                        height=360,
                    )
                    gr.Markdown(
                        "Draw with the mouse or a finger: the panel below follows the stroke as you draw, and the "
                        "full result (scores, the other decodes) updates when you lift the pen.",
                        elem_classes=["vd-hint"],
                    )
                    live = live_sketch()
                with gr.Tab("Upload", id="upload"):
                    upload = DigitImage(
                        label="Upload or paste a picture of a digit",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        format="png",
                        elem_id="rec-upload",
                        height=300,
                    )
                with gr.Tab("Examples", id="examples"):
                    examples = gr.Gallery(
                        value=example_gallery(),
                        label="Click a digit from the dataset",
                        columns=5,
                        height="auto",
                        allow_preview=False,
                        elem_id="rec-examples",
                        elem_classes=["digit"],
                        format="png",
                    )
        with gr.Column(scale=3, min_width=400):
            gr.Markdown("### 2 · What the model makes of it")
            # not the "digit" class: the panel is shown scaled, and its captions read better smoothly scaled
            out_img = PictureOut(
                label="Input, reconstruction and error map",
                type="pil",
                format="png",
                interactive=False,
                elem_id="rec-output",
                show_label=False,
                buttons=["download"],
            )
            gr.Markdown(
                "Error map: red where the reconstruction adds ink, blue where it misses ink.", elem_classes=["vd-hint"]
            )
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=320):
                    scores = gr.Markdown(label="Scores", elem_id="rec-scores")
                with gr.Column(scale=2, min_width=240):
                    code_plot = gr.Plot(label="The latent code", elem_id="rec-code")
            gr.Markdown(
                "**The 5 nearest dataset digits in latent space** (label · distance)", elem_classes=["vd-caption"]
            )
            neighbours = gr.HTML(elem_id="rec-neighbours", label="The 5 nearest dataset digits", show_label=False)
    out = Outputs(
        panel=out_img,
        scores=scores,
        code=code_plot,
        neighbours=neighbours,
        here=here,
    )

    inputs = [rec_ck, cmp_ck]
    upload.upload(
        out.bind(staged(reconstruct)),
        [upload, *inputs],
        list(out),
        api_name="reconstruct",
        concurrency_limit=CONCURRENCY,
    )
    sketch.change(
        out.bind(staged(reconstruct_sketch)),
        [sketch, *inputs],
        list(out),
        trigger_mode="always_last",
        show_progress="hidden",
        **private,
    )
    examples.select(out.bind(staged(reconstruct_example)), inputs, list(out), **private)
    gr.on([rec_ck.input, cmp_ck.input], out.bind(staged(reconstruct_again)), [here, *inputs], list(out), **private)
    tab.select(refresh_checkpoint, rec_ck, rec_ck, show_progress="hidden", **private).then(
        refresh_compare, cmp_ck, cmp_ck, show_progress="hidden", **private
    )
    rec_ck.change(live_payload, rec_ck, live, show_progress="hidden", **private)
    return ReconstructTab(rec_ck, cmp_ck, out, live)
