"""The Latent map tab: the bundled digits' codes in 2-D (PCA or t-SNE), hover and click to look inside."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from .. import inference, plots, zerogpu
from ..images import to_pil
from ..validation import whole
from .components import NumberSlider, checkpoint_dropdown, out_image
from .shared import SPRITE_COLS, Outputs, digit, event_data, friendly, info, need, refresh_checkpoint

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_ROUTE = "vaedemo-static"  # relative URLs, so the app also works under a proxy's sub-path
MAP_DEFAULT_N = 5000
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}


def here_key(here: Any) -> str | None:
    """A short name for "your digit", so a map knows whether the star it shows is still the right one."""
    if here is None:
        return None
    return hashlib.sha1(np.asarray(here, np.float32).tobytes()).hexdigest()[:12]


def _rounded(values: np.ndarray) -> list[float]:
    return np.round(np.asarray(values, np.float64), 4).tolist()


def map_payload(lm: inference.LatentMap, here_xy: tuple[float, float] | None,
                prior_xy: np.ndarray | None = None) -> str:
    """The map as JSON for the page's Plotly widget (latent_map.js)."""
    caption = (f"{lm.n:,} digits, {METHOD_NAMES[lm.method]} of the codes (μ) of {lm.checkpoint}. Hover a point to "
               "see its digit; click a point for its reconstruction; click empty space to decode that place.")
    payload = {
        "checkpoint": lm.checkpoint, "method": lm.method,
        "axis": ["PC 1", "PC 2"] if lm.method == "pca" else ["t-SNE 1", "t-SNE 2"],
        "x": _rounded(lm.coords[:, 0]), "y": _rounded(lm.coords[:, 1]),
        "label": np.asarray(lm.labels, np.int64).tolist(),
        "index": np.asarray(lm.indices, np.int64).tolist(),
        "classes": [str(c) for c in range(10)],
        "colours": plots.CLASS_COLOURS,
        "here": [round(here_xy[0], 4), round(here_xy[1], 4)] if here_xy else None,
        "prior": {"x": _rounded(prior_xy[:, 0]), "y": _rounded(prior_xy[:, 1])} if prior_xy is not None else None,
        "sprite": {"url": f"{STATIC_ROUTE}/digits.png", "cols": SPRITE_COLS, "size": 28},
        "marker_size": 6 if lm.n <= 2000 else 5 if lm.n <= 5000 else 4,
        "caption": caption,
    }
    return json.dumps(payload, separators=(",", ":"))


def _manifold(checkpoint: str, about: dict):
    if about["latent_dim"] != 2:
        return gr.update(value=None, visible=False)
    label = 0 if about["conditional"] else None
    grid = inference.manifold_grid(checkpoint, n=15, digit=label)
    caption = "Decoded grid over the 2-D latent plane" + (" (digit 0)" if label is not None else "")
    return gr.update(value=to_pil(grid, 1), visible=True, label=caption)


def _note(about: dict, lm: inference.LatentMap, starred: bool, prior_xy: np.ndarray | None) -> str:
    note = (f"**{about['name']}** · {about['kind_label']} · latent {about['latent_dim']} · {lm.n:,} digits · "
            f"{METHOD_NAMES[lm.method]}"
            + (f" (computed in {lm.seconds:.0f} s)" if lm.seconds >= 1 and not lm.from_disk else ""))
    if starred:
        note += "\n\nThe black star marks the digit you gave on the Reconstruct tab."
    if prior_xy is not None:
        note += (f"\n\nGrey diamonds: the centres of the {len(prior_xy)} Gaussians of this model's learnt prior, "
                 "which samples are drawn around. Training moves them in among the digits' codes; a centre far "
                 "from every digit decodes to a blend.")
        if lm.method == "tsne":
            note += " (t-SNE has no exact place for a new code: each centre is drawn among its nearest digits.)"
    return note


def view(checkpoint: Any, method: Any, n: Any, here: Any, progress: Any) -> dict:
    """The map, the manifold grid, the note and the key saying what is shown, by output name."""
    checkpoint = need(checkpoint)
    n = whole(n, "The number of digits", inference.MIN_MAP_SIZE, inference.MAP_SIZE)
    about = info(checkpoint)
    lm = inference.latent_map(checkpoint, method, n, progress=lambda f, msg: progress(f, desc=msg))
    here_xy = None
    if here is not None:
        try:
            here_xy = inference.project_point(checkpoint, lm.method, np.asarray(here, np.float32))
        except ValueError:
            here_xy = None
    prior_xy = inference.prior_centres(checkpoint, lm.method)
    key = {"checkpoint": checkpoint, "method": lm.method, "n": n, "here": here_key(here)}
    return {"map": map_payload(lm, here_xy, prior_xy), "manifold": _manifold(checkpoint, about),
            "note": _note(about, lm, here_xy is not None, prior_xy), "key": key}


@friendly
@zerogpu.gpu("latent_map")
def latent_map(checkpoint, method="pca", n=MAP_DEFAULT_N, here=None, progress=gr.Progress()):
    """/latent_map: encode n bundled digits and project their codes to 2-D; returns the map as JSON."""
    return view(checkpoint, method, n, here, progress)


@friendly
@zerogpu.gpu("latent_map")
def latent_map_auto(checkpoint, method, n, here, key, progress=gr.Progress()):
    """On opening the tab: draw the map unless the one shown is already up to date."""
    if not checkpoint:
        return {"note": "No models yet: train one in the Train tab."}
    wanted = {"checkpoint": checkpoint, "method": str(method).lower(), "n": whole(n, "n", 1, 10**6),
              "here": here_key(here)}
    if key == wanted:
        return {}
    return view(checkpoint, method, n, here, progress)


def _map_click(key, evt: gr.EventData) -> dict:
    """The click's data, once a map is drawn (``key`` says which)."""
    if not key:
        raise ValueError("Draw the map first.")
    return event_data(evt)


@friendly
@zerogpu.gpu("reconstruct")
def map_point(key, evt: gr.EventData):
    """A click on a point: that digit and the model's reconstruction of it."""
    data = _map_click(key, evt)
    index = whole(data.get("index"), "The digit number", 0, inference.MAP_SIZE - 1)
    r = inference.reconstruct(index, key["checkpoint"], n_samples=0)
    label = int(inference.bundled()[1][index])
    text = (f"**Digit #{index}** (label {label}): original on the left, reconstruction on the right. "
            f"Error {r.mse:.4f} per pixel.")
    return {"original": gr.update(value=digit(r.input, 6), label=f"Original #{index}"),
            "recon": gr.update(value=digit(r.recon, 6), label="Reconstruction"), "picked": text}


@friendly
@zerogpu.gpu("reconstruct")
def map_space(key, evt: gr.EventData):
    """A click on empty space: decode the code behind that place of the map."""
    data = _map_click(key, evt)
    x, y = data.get("x"), data.get("y")
    p = inference.decode_at(key["checkpoint"], key["method"], x, y)
    how = "the exact inverse of PCA" if key["method"] == "pca" else "a weighted average of the 10 nearest codes"
    text = f"**Decoded the place ({float(x):.2f}, {float(y):.2f})** using {how}."
    if p.far:
        text += "\n\n**Far from the data:** no digit on the map lies near this place, so the decode is a guess."
    return {"decoded": gr.update(value=digit(p.image, 6), label="Decoded at the clicked place"), "picked": text}


def read_static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


@dataclass
class MapTab:
    model: gr.Dropdown


def render(tab: gr.Tab, options: list[tuple[str, str]], here: gr.State) -> MapTab:
    """Build the tab's components inside ``tab`` and wire its events."""
    private = {"api_visibility": "private"}
    map_key = gr.State(None)  # what the latent map shows: checkpoint, method, n, here
    with gr.Row():
        map_ck = checkpoint_dropdown(options, elem_id="map-checkpoint")
        method = gr.Radio([("PCA (instant)", "pca"), ("t-SNE (slower the first time)", "tsne")], value="pca",
                          label="Projection to 2-D", elem_id="map-method")
        size = NumberSlider(500, inference.MAP_SIZE, value=MAP_DEFAULT_N, step=500, label="Digits on the map",
                            elem_id="map-n")
        draw = gr.Button("Draw map", variant="primary", elem_id="map-draw", scale=0)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            lmap = gr.HTML(value=None, label="Map data (JSON)", html_template=read_static("latent_map.html"),
                           css_template=read_static("latent_map.css"), js_on_load=read_static("latent_map.js"),
                           head=f'<script src="{STATIC_ROUTE}/plotly.min.js"></script>', elem_id="latent-map",
                           min_height=600, apply_default_css=False)
        with gr.Column(scale=1, min_width=260):
            note = gr.Markdown("Hover a point to see its digit. Click a point to see its reconstruction; click "
                               "empty space to decode that place.", label="About this map", elem_id="map-note")
            with gr.Row():
                original = out_image("Original: click a point", "map-original", height=180)
                recon = out_image("Reconstruction", "map-recon", height=180)
            decoded = out_image("Decoded: click empty space", "map-decoded", height=180)
            picked = gr.Markdown(label="What you clicked", elem_id="map-picked")
    manifold = out_image("Decoded grid over the 2-D latent plane", "map-manifold", visible=False, height=460)

    out = Outputs(map=lmap, manifold=manifold, note=note, key=map_key)
    clicks = Outputs(original=original, recon=recon, decoded=decoded, picked=picked)
    inputs = [map_ck, method, size, here]
    draw.click(out.bind(latent_map), inputs, list(out), api_name="latent_map")
    gr.on([map_ck.input, method.input], out.bind(latent_map), inputs, list(out), **private)
    tab.select(refresh_checkpoint, map_ck, map_ck, show_progress="hidden", **private).then(
        out.bind(latent_map_auto), [*inputs, map_key], list(out), **private)
    lmap.point_click(clicks.only("original", "recon", "picked").bind(map_point), map_key,
                     list(clicks.only("original", "recon", "picked")), show_progress="hidden", **private)
    lmap.space_click(clicks.only("decoded", "picked").bind(map_space), map_key,
                     list(clicks.only("decoded", "picked")), show_progress="hidden", **private)
    return MapTab(map_ck)
