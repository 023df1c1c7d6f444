"""The Sample tab: new digits from the prior, walks between two digits, traversals, and projector exports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from .. import exports, inference, plots, zerogpu
from ..inference import browser
from ..validation import number, whole, within
from .components import NumberBox, NumberSlider, checkpoint_dropdown, digit_picker, out_image, strip_image
from .live import b64_array, live_widget
from .shared import Outputs, export_path, friendly, here_digit, info, need, refresh_checkpoint, strip

LIVE_DIMS = 16  # traversal sliders shown at most, most used first


def _digit_choice(value: Any) -> int | None:
    if value in (None, "", "any"):
        return None
    return whole(value, "The digit", 0, 9)


def reading_note(reading: inference.Reading) -> str:
    clear = reading.clear
    counts = np.bincount(reading.labels[clear], minlength=10)
    read = " · ".join(f"{d}×{c}" for d, c in enumerate(counts) if c) or "none"
    return (
        f"**The digit classifier reads {int(clear.sum())} of {len(clear)} as clear digits** "
        f"(≥ {reading.threshold:.0%} sure; green labels). Amber labels with a ? mark blends and scribbles "
        f"it is unsure of. Clear ones by digit: {read}."
    )


def sample_view(checkpoint: Any, count: Any, temperature: Any, seed: Any, digit_choice: Any) -> dict:
    """A reproducible grid of prior samples, labelled with the classifier's reading, and its download."""
    checkpoint = need(checkpoint)
    about = info(checkpoint)
    images = inference.sample(
        checkpoint, count, temperature, seed, _digit_choice(digit_choice) if about["conditional"] else None
    )
    ncols, scale, pad = math.ceil(math.sqrt(len(images))), 3, 2
    grid = exports.image_grid(images, ncols=ncols, scale=scale, pad=pad)
    note = about["sampling_note"]
    reading = inference.read_digits(images)
    if reading is not None:  # the shown grid carries the classifier's labels; the download stays clean
        grid = exports.label_grid(
            grid, reading.labels, reading.clear, ncols, cell=images.shape[-1] * scale, gap=pad * scale
        )
        note += "\n\n" + reading_note(reading)
    path = export_path(f"samples-{checkpoint}-seed{int(float(seed))}.png")
    path.write_bytes(exports.to_png_bytes(exports.image_grid(images, pad=2)))
    return {"grid": grid, "file": gr.update(value=str(path), visible=True), "note": note}


@friendly
@zerogpu.gpu("sample")
def sample(checkpoint, count=64, temperature=1.0, seed=0, digit="any"):
    """/sample: a reproducible grid of images decoded from the prior."""
    return sample_view(checkpoint, count, temperature, seed, digit)


@friendly
@zerogpu.gpu("sample")
def sample_first_visit(checkpoint, count, temperature, seed, digit, shown):
    """Opening the tab shows a grid at once; later visits keep whatever the visitor made."""
    if shown is not None or not checkpoint:
        return {}
    return sample_view(checkpoint, count, temperature, seed, digit)


@friendly
def sample_controls(checkpoint):
    """Adapt the Sample tab to the model: the digit choice for a cvae, and the traversal dimensions."""
    if not checkpoint:
        return {"digit": gr.update(visible=False), "note": "", "dims": gr.update(choices=[], value=[]), "kl": None}
    about = info(checkpoint)
    ranked = inference.dims_by_kl(checkpoint)
    unit = "nats" if about["variational"] else "variance"
    dims = gr.update(
        choices=[(f"z{d} · {v:.2f} {unit}", d) for d, v in ranked], value=[d for d, _ in ranked[: min(5, len(ranked))]]
    )
    what = "KL" if about["variational"] else "Variance of the codes"
    bars = plots.kl_bars(ranked[:32], title=f"{what} per latent dimension, largest first")
    bars.update_layout(height=280)
    return {"digit": gr.update(visible=about["conditional"]), "note": about["sampling_note"], "dims": dims, "kl": bars}


def _endpoint(image: Any, index: Any, what: str) -> np.ndarray:
    if image is not None:
        return inference.digit_input(image)
    if index is None or index == "":
        raise ValueError(f"Give the {what} digit: upload one or type a dataset number (0-9999).")
    return inference.digit_input(within(index, f"The {what} digit number", 0, inference.MAP_SIZE - 1))


@friendly
@zerogpu.gpu("interpolate")
def interpolate(checkpoint, start_image=None, end_image=None, start_index=1, end_index=7, steps=10):
    """/interpolate: the straight (lerp) and spherical (slerp) path between two digits' codes."""
    checkpoint = need(checkpoint)
    a = _endpoint(start_image, start_index, "start")
    b = _endpoint(end_image, end_index, "end")
    it = inference.interpolate(checkpoint, a, b, steps)
    about = info(checkpoint)
    norms = plots.norm_paths(it.t, it.lerp_norms, it.slerp_norms, typical_norm=about["typical_norm"])
    frames = np.concatenate([it.lerp, np.zeros_like(it.lerp[:, :, :4]), it.slerp], axis=2)  # (steps, 28, 60)
    gif = export_path(f"interpolation-{checkpoint}.gif")
    exports.animated_gif(frames, gif, fps=8, scale=4, bounce=True)
    return {
        "lerp": strip(it.lerp),
        "slerp": strip(it.slerp),
        "norms": norms,
        "gif": gr.update(value=str(gif), visible=True),
    }


@friendly
@zerogpu.gpu("traverse")
def traverse(checkpoint, image=None, index=0, dims=None, steps=9, span=3.0):
    """/traverse: move one latent dimension at a time over ±span σ and decode."""
    checkpoint = need(checkpoint)
    x = _endpoint(image, index, "input")
    tr = inference.traverse(checkpoint, x, dims=list(dims) if dims else None, steps=steps, span=span)
    grid = exports.image_grid(tr.images, scale=3, pad=2)
    rows, cols = tr.images.shape[:2]
    frames = tr.images.transpose(1, 2, 0, 3).reshape(cols, 28, rows * 28)  # frame t: every dim side by side
    gif = export_path(f"traversal-{checkpoint}.gif")
    exports.animated_gif(frames, gif, fps=6, scale=4, bounce=True)
    text = (
        "Rows, top to bottom: "
        + ", ".join(f"z{d}" for d in tr.dims)
        + f". Columns go from −{float(span):g} to +{float(span):g} σ; "
        "the middle column is the digit's own code."
    )
    return {"grid": grid, "gif": gr.update(value=str(gif), visible=True), "text": text}


@friendly
def export_projector(checkpoint, n=2000, progress=gr.Progress()):
    """Latent codes as TSV + a sprite for https://projector.tensorflow.org."""
    checkpoint = need(checkpoint)
    n = within(n, "The number of digits", inference.MIN_MAP_SIZE, inference.MAP_SIZE)
    lm = inference.latent_map(checkpoint, "pca", n, progress=lambda f, msg: progress(f, desc=msg))
    images = inference.bundled()[0][lm.indices].astype(np.float32) / 255.0
    files = exports.projector_bundle(lm.codes, lm.labels, images, indices=lm.indices)
    folder = export_path("x").parent
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    zipped = folder / f"projector-{checkpoint}.zip"
    zipped.write_bytes(exports.zip_bytes(files))
    return [str(zipped), *paths]


@friendly
@zerogpu.gpu("sample")
def live_samples(checkpoint, count, temperature, seed, digit_choice):
    """The grid's draws for the page to re-decode as the temperature moves (live_grid.js), after /sample."""
    checkpoint = need(checkpoint)
    about = info(checkpoint)
    temperature = number(temperature, "The temperature", 0.0, 5.0, lo_open=True)
    digit = _digit_choice(digit_choice) if about["conditional"] else None
    draws = browser.sample_draws(checkpoint, count, seed, digit)
    n = len(draws["centre"])
    payload = {
        "kind": "samples",
        "checkpoint": checkpoint,
        "model": browser.browser_model(checkpoint),
        "count": n,
        "ncols": math.ceil(math.sqrt(n)),
        "temperature": temperature,
        "centre": b64_array(draws["centre"]),
        "offset": b64_array(draws["offset"]),
        "labels": b64_array(draws["labels"]) if draws["labels"] is not None else None,
    }
    return {"live": json.dumps(payload, separators=(",", ":"))}


@friendly
@zerogpu.gpu("traverse")
def live_traverse(checkpoint, image=None, index=0, dims=None, span=3.0):
    """A digit's code and the σ of each dimension for the page's sliders (live_grid.js), after /traverse:
    the chosen dimensions, or the 16 most used, in the order the server's traversal uses."""
    checkpoint = need(checkpoint)
    x = _endpoint(image, index, "input")
    if not dims:
        dims = [d for d, _ in inference.dims_by_kl(checkpoint)[:LIVE_DIMS]]
    tr = inference.traverse(checkpoint, x, dims=list(dims)[:LIVE_DIMS], steps=2, span=span)
    payload = {
        "kind": "traverse",
        "checkpoint": checkpoint,
        "model": browser.browser_model(checkpoint),
        "code": b64_array(tr.code),
        "unit": b64_array(tr.unit),
        "dims": [int(d) for d in tr.dims],
        "span": float(tr.values[-1]),
        "label": tr.label_used,
    }
    return {"live": json.dumps(payload, separators=(",", ":"))}


@friendly
@zerogpu.gpu("interpolate")
def live_interpolate(checkpoint, start_image=None, end_image=None, start_index=1, end_index=7):
    """The two end codes for the page's scrubber along the lerp and slerp paths (live_grid.js), after
    /interpolate (whose rule, and label for a cvae, they come from)."""
    checkpoint = need(checkpoint)
    a = _endpoint(start_image, start_index, "start")
    b = _endpoint(end_image, end_index, "end")
    it = inference.interpolate(checkpoint, a, b, 2)
    payload = {
        "kind": "interpolate",
        "checkpoint": checkpoint,
        "model": browser.browser_model(checkpoint),
        "ends": b64_array(it.ends),
        "label": it.label_used,
    }
    return {"live": json.dumps(payload, separators=(",", ":"))}


@dataclass
class SampleTab:
    model: gr.Dropdown


def render(tab: gr.Tab, options: list[tuple[str, str]], here: gr.State) -> SampleTab:
    """Build the tab's components inside ``tab`` and wire its events."""
    private = {"api_visibility": "private"}
    with gr.Row():
        smp_ck = checkpoint_dropdown(options, elem_id="sample-checkpoint")
        smp_note = gr.Markdown(label="How these are sampled", elem_classes=["vd-hint"])
    with gr.Tabs():
        with gr.Tab("From the prior"):
            with gr.Row():
                count = NumberSlider(1, 256, value=64, step=1, label="How many")
                temperature = NumberSlider(
                    0.1,
                    3.0,
                    value=1.0,
                    step=0.1,
                    label="Temperature",
                    info="Scales the prior's spread: below 1 safer, above 1 wilder.",
                    elem_id="sample-temperature",
                )
                seed = NumberBox(
                    value=0,
                    label="Seed",
                    precision=None,
                    minimum=0,
                    elem_id="sample-seed",
                    info="Same seed, same grid.",
                )
                digit_dd = gr.Dropdown(
                    [("any (0-9 in turn)", "any"), *[(str(d), str(d)) for d in range(10)]],
                    value="any",
                    label="Digit (CVAE)",
                    visible=False,
                    filterable=False,
                )
            smp_btn = gr.Button("Sample", variant="primary", elem_id="sample-go")
            with gr.Row():
                smp_grid = out_image("Samples", "sample-grid")
            smp_file = gr.DownloadButton("Download PNG grid", visible=False, elem_id="sample-download")
            smp_live = live_widget("sample-live")
        with gr.Tab("Interpolate"):
            gr.Markdown(
                "Two digits: upload one, or type its number in the dataset (0-9999). "
                "Straight (lerp) and spherical (slerp) paths between their codes.",
                elem_classes=["vd-hint"],
            )
            with gr.Row():
                with gr.Column():
                    a_img, a_idx, a_here = digit_picker("Start digit", "…or start at dataset digit #", 1)
                with gr.Column():
                    b_img, b_idx, b_here = digit_picker("End digit", "…or end at dataset digit #", 7)
                steps = NumberSlider(2, 64, value=10, step=1, label="Steps")
            int_btn = gr.Button("Interpolate", variant="primary", elem_id="int-go")
            lerp_img = strip_image("Straight line (lerp)", "int-lerp")
            slerp_img = strip_image("Great circle (slerp): keeps ‖z‖ where the prior puts its mass", "int-slerp")
            int_live = live_widget("int-live")
            with gr.Row():
                norm_plot = gr.Plot(label="‖z‖ along each path", elem_id="int-norms")
                int_gif = gr.DownloadButton("Download animated GIF", visible=False)
        with gr.Tab("Traverse"):
            gr.Markdown(
                "Move one latent dimension at a time over ±span σ, keeping the others at the "
                "digit's own code. Dimensions are listed by how much the model uses them.",
                elem_classes=["vd-hint"],
            )
            with gr.Row():
                with gr.Column():
                    t_img, t_idx, t_here = digit_picker("Digit", "…or dataset digit #", 0)
                with gr.Column(scale=2):
                    dims = gr.Dropdown(
                        label="Dimensions (most used first)",
                        choices=[],
                        value=[],
                        multiselect=True,
                        allow_custom_value=True,
                        info="Empty: the 8 most used.",
                    )
                    with gr.Row():
                        t_steps = NumberSlider(3, 31, value=9, step=2, label="Steps")
                        span = NumberSlider(0.5, 5.0, value=3.0, step=0.5, label="Span (σ)")
            trv_btn = gr.Button("Traverse", variant="primary", elem_id="trv-go")
            trv_img = strip_image("Traversal: one row per dimension", "trv-grid")
            trv_md = gr.Markdown(label="What the rows are", elem_id="trv-text")
            trv_live = live_widget("trv-live")
            trv_gif = gr.DownloadButton("Download animated GIF", visible=False)
            kl_plot = gr.Plot(label="How much each dimension is used", elem_id="trv-kl")
        with gr.Tab("Export"):
            gr.Markdown(
                "Latent codes for the [TensorFlow Embedding Projector](https://projector.tensorflow.org): "
                "there, press *Load* and choose `tensors.tsv` and `metadata.tsv`. The zip also holds "
                "`sprite.png` and `projector_config.json` for hosting the bundle yourself.",
                elem_classes=["vd-hint"],
            )
            exp_n = NumberSlider(500, inference.MAP_SIZE, value=2000, step=500, label="Digits to export")
            exp_btn = gr.Button("Export codes", variant="primary")
            exp_files = gr.File(label="Projector files", file_count="multiple", interactive=False)

    samples = Outputs(grid=smp_grid, file=smp_file, note=smp_note)
    controls = Outputs(digit=digit_dd, note=smp_note, dims=dims, kl=kl_plot)
    walks = Outputs(lerp=lerp_img, slerp=slerp_img, norms=norm_plot, gif=int_gif)
    traversal = Outputs(grid=trv_img, gif=trv_gif, text=trv_md)
    sample_inputs = [smp_ck, count, temperature, seed, digit_dd]

    live_grid, live_trv, live_int = Outputs(live=smp_live), Outputs(live=trv_live), Outputs(live=int_live)
    # The live widgets are filled by a second, private step, so /sample and /traverse answer as before.
    smp_btn.click(samples.bind(sample), sample_inputs, list(samples), api_name="sample").success(
        live_grid.bind(live_samples), sample_inputs, list(live_grid), show_progress="hidden", **private
    )
    smp_ck.input(controls.bind(sample_controls), smp_ck, list(controls), show_progress="hidden", **private)
    tab.select(refresh_checkpoint, smp_ck, smp_ck, show_progress="hidden", **private).then(
        controls.bind(sample_controls), smp_ck, list(controls), show_progress="hidden", **private
    ).then(samples.bind(sample_first_visit), [*sample_inputs, smp_grid], list(samples), **private).success(
        live_grid.bind(live_samples), sample_inputs, list(live_grid), show_progress="hidden", **private
    )
    int_btn.click(
        walks.bind(interpolate), [smp_ck, a_img, b_img, a_idx, b_idx, steps], list(walks), api_name="interpolate"
    ).success(
        live_int.bind(live_interpolate),
        [smp_ck, a_img, b_img, a_idx, b_idx],
        list(live_int),
        show_progress="hidden",
        **private,
    )
    for button, target in ((a_here, a_img), (b_here, b_img), (t_here, t_img)):
        button.click(here_digit, here, target, **private)
    trv_btn.click(
        traversal.bind(traverse), [smp_ck, t_img, t_idx, dims, t_steps, span], list(traversal), api_name="traverse"
    ).success(
        live_trv.bind(live_traverse),
        [smp_ck, t_img, t_idx, dims, span],
        list(live_trv),
        show_progress="hidden",
        **private,
    )
    exp_btn.click(export_projector, [smp_ck, exp_n], exp_files, api_name="projector_export", concurrency_limit=1)
    return SampleTab(smp_ck)
