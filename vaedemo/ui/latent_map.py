"""The Latent map tab: the bundled digits' codes in 2-D (PCA, t-SNE or UMAP), hover and click to look inside,
colour by a per-digit figure, a second model's map linked beside it, and selections to act on (``map_tools``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from .. import inference, plots, zerogpu
from ..images import to_pil
from ..inference import browser
from ..validation import whole, within
from . import map_tools
from .components import NumberSlider, checkpoint_dropdown, out_image
from .live import LIVE_HEAD, b64_array
from .shared import (
    NONE_CHOICE,
    SPRITE_COLS,
    STATIC_ROUTE,
    Outputs,
    digit,
    event_data,
    friendly,
    info,
    need,
    read_static,
    refresh_checkpoint,
    refresh_compare,
)

MAP_DEFAULT_N = 5000
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
COLOUR_CHOICES = [("Label (digit class)", "label"), ("Reconstruction error", "error"), ("−ELBO", "neg_elbo"),
                  ("KL(q(z|x) ‖ p(z))", "kl"), ("Classifier's confidence", "confidence")]


def here_key(here: Any) -> str | None:
    """A short name for "your digit", so a map knows whether the star it shows is still the right one."""
    if here is None:
        return None
    return hashlib.sha1(np.asarray(here, np.float32).tobytes()).hexdigest()[:12]


def _rounded(values: np.ndarray) -> list[float]:
    return np.round(np.asarray(values, np.float64), 4).tolist()


def _significant(values: np.ndarray) -> list[float]:
    """Four significant digits: a KL of 30 nats and an error of 0.004 both keep their detail."""
    return [float(f"{v:.4g}") for v in np.asarray(values, np.float64)]


def _xy(points: np.ndarray) -> dict:
    return {"x": _rounded(points[:, 0]), "y": _rounded(points[:, 1])}


def _map_part(lm: inference.LatentMap, values: np.ndarray | None, colour: str) -> dict:
    """What one drawn map needs: its points, labels, digit numbers and (optionally) a figure per digit."""
    return {
        "checkpoint": lm.checkpoint, "method": lm.method,
        "axis": ["PC 1", "PC 2"] if lm.method == "pca" else [f"{METHOD_NAMES[lm.method]} {i}" for i in (1, 2)],
        "x": _rounded(lm.coords[:, 0]), "y": _rounded(lm.coords[:, 1]),
        "label": np.asarray(lm.labels, np.int64).tolist(),
        "index": np.asarray(lm.indices, np.int64).tolist(),
        "values": _significant(values) if values is not None else None,
        "colour_title": inference.COLOUR_BY[colour] if values is not None else None,
    }


def live_part(lm: inference.LatentMap) -> dict | None:
    """What the page needs to decode the place under the cursor itself (live_decode.js): the model (its
    decoder.onnx is fetched from the app's own route) and the map's way back from a place to a code, as
    little-endian base64 arrays (float32, the codes float16). None where the server must answer (a model
    that cannot give one)."""
    try:
        model = browser.browser_model(lm.checkpoint)
        inv = browser.map_inverse(lm)
    except ValueError:
        return None
    return {"model": model, "inverse": pack_inverse(inv, model["latent_dim"])}


def pack_inverse(inv: dict, dim: int) -> dict:
    """``inference.browser.map_inverse``'s arrays as JSON: little-endian base64, numbers as they are."""
    out = {"method": inv["method"], "dim": int(dim)}
    for key in ("mean", "components", "coords", "code_mean", "basis", "coeffs", "labels"):
        if key in inv:
            out[key] = b64_array(inv[key])
    for key in ("k", "eps", "a", "b"):
        if key in inv:
            out[key] = float(inv[key]) if key != "k" else int(inv[key])
    return out


def map_payload(lm: inference.LatentMap, here_xy: tuple[float, float] | None,
                prior_xy: np.ndarray | None = None, *, values: np.ndarray | None = None, colour: str = "label",
                cloud: inference.PosteriorCloud | None = None, compare: dict | None = None,
                live: dict | None = None) -> str:
    """The map as JSON for the page's Plotly widget (latent_map.js); ``compare`` is a second ``_map_part``."""
    caption = (f"{lm.n:,} digits, {METHOD_NAMES[lm.method]} of the codes (μ) of {lm.checkpoint}. Hover a point to "
               "see its digit; click a point for its reconstruction; click empty space to decode that place; "
               "lasso or box to select.")
    payload = {
        **_map_part(lm, values, colour),
        "classes": [str(c) for c in range(10)],
        "colours": plots.CLASS_COLOURS,
        "here": [round(here_xy[0], 4), round(here_xy[1], 4)] if here_xy else None,
        "prior": _xy(prior_xy) if prior_xy is not None else None,
        "cloud": ({**_xy(cloud.samples), "ellipse": _xy(cloud.ellipse) if cloud.ellipse is not None else None}
                  if cloud is not None else None),
        "compare": compare,
        "sprite": {"url": f"{STATIC_ROUTE}/digits.png", "cols": SPRITE_COLS, "size": 28},
        "marker_size": 6 if lm.n <= 2000 else 5 if lm.n <= 5000 else 4,
        "caption": caption + (" The panel beside the map shows the digit under the pointer." if live else ""),
        "live": live,
    }
    return json.dumps(payload, separators=(",", ":"))


def _manifold(checkpoint: str, about: dict):
    if about["latent_dim"] != 2:
        return gr.update(value=None, visible=False)
    label = 0 if about["conditional"] else None
    grid = inference.manifold_grid(checkpoint, n=15, digit=label)
    caption = "Decoded grid over the 2-D latent plane" + (" (digit 0)" if label is not None else "")
    return gr.update(value=to_pil(grid, 1), visible=True, label=caption)


def _note(about: dict, lm: inference.LatentMap, starred: bool, prior_xy: np.ndarray | None,
          colour: str = "label", cloud: inference.PosteriorCloud | None = None, compared: dict | None = None) -> str:
    note = (f"**{about['name']}** · {about['kind_label']} · latent {about['latent_dim']} · {lm.n:,} digits · "
            f"{METHOD_NAMES[lm.method]}"
            + (f" (computed in {lm.seconds:.0f} s)" if lm.seconds >= 1 and not lm.from_disk else ""))
    if colour != "label":
        note += (f"\n\nColoured by each digit's {inference.COLOUR_BY[colour]}, the figure the Reconstruct tab "
                 "reports for it; the colour bar gives the scale.")
    if compared is not None:
        note += (f"\n\nRight: the same digits on **{compared['name']}**'s map ({compared['kind_label']}). Hover a "
                 "digit in one map to ring it in the other; a lasso in one selects in both.")
    if starred:
        note += "\n\nThe black star marks the digit you gave on the Reconstruct tab."
        if cloud is not None:
            how = (", and the red outline holds 95% of q(z|x) seen through PCA." if cloud.ellipse is not None
                   else f", each placed by {METHOD_NAMES[lm.method]}'s rule for a new code.")
            note += (f" The small dark dots around it are {len(cloud.samples)} draws from q(z|x), where the encoder "
                     "puts it" + how + " (Zoom in where it is small.)")
    if lm.method == "umap":
        note += ("\n\nUMAP has no exact way back and forth: a new digit is placed, and a clicked place decoded, "
                 "from its 15 nearest neighbours (umap-learn's starting point, without its refinement), so both "
                 "are approximate.")
    if prior_xy is not None:
        note += (f"\n\nGrey diamonds: the centres of the {len(prior_xy)} Gaussians of this model's learnt prior, "
                 "which samples are drawn around. Training moves them in among the digits' codes; a centre far "
                 "from every digit decodes to a blend.")
        if lm.method != "pca":
            note += (f" ({METHOD_NAMES[lm.method]} has no exact place for a new code: each centre is drawn among "
                     "its nearest digits.)")
    return note


def map_key(checkpoint: str, method: str, n: int, here: Any, colour: str = "label", compare: str = "") -> dict:
    """What a drawn map shows; colouring and the compared model are named only when set."""
    key = {"checkpoint": checkpoint, "method": method, "n": n, "here": here_key(here)}
    if colour != "label":
        key["colour"] = colour
    if compare:
        key["compare"] = compare
    return key


def view(checkpoint: Any, method: Any, n: Any, here: Any, progress: Any, colour: Any = "label",
         compare: Any = "") -> dict:
    """The map, the manifold grid, the note and the key saying what is shown, by output name."""
    checkpoint = need(checkpoint)
    n = within(n, "The number of digits", inference.MIN_MAP_SIZE, inference.MAP_SIZE)
    colour = inference.check_colour(colour)
    about = info(checkpoint)
    lm = inference.latent_map(checkpoint, method, n, progress=lambda f, msg: progress(f, desc=msg))
    values = inference.map_values(lm, colour)
    here_xy = cloud = None
    if here is not None:
        try:
            here_xy = inference.project_point(checkpoint, lm.method, np.asarray(here, np.float32))
            cloud = inference.posterior_cloud(checkpoint, lm.method, np.asarray(here, np.float32))
        except ValueError:
            here_xy = cloud = None
    prior_xy = inference.prior_centres(checkpoint, lm.method)
    compared = part = None
    if compare:
        compared = info(compare)
        other = inference.latent_map(compare, lm.method, n, progress=lambda f, msg: progress(f, desc=msg))
        try:
            other_values = inference.map_values(other, colour)
        except ValueError:  # e.g. an AE compared by −ELBO: its map keeps the labels' colours
            other_values = None
        part = {**_map_part(other, other_values, colour), "live": live_part(other)}  # decoded under the cursor
    key = map_key(checkpoint, lm.method, n, here, colour, compare or "")
    live = live_part(lm)
    return {"map": map_payload(lm, here_xy, prior_xy, values=values, colour=colour, cloud=cloud, compare=part,
                               live=live),
            "manifold": _manifold(checkpoint, about),
            "note": _note(about, lm, here_xy is not None, prior_xy, colour, cloud, compared), "key": key}


@friendly
@zerogpu.gpu("latent_map")
def latent_map(checkpoint, method="pca", n=MAP_DEFAULT_N, here=None, progress=gr.Progress(), colour="label",
               compare=""):
    """/latent_map: encode n bundled digits and project their codes to 2-D (PCA, t-SNE or UMAP), coloured by
    label or a per-digit figure, optionally beside a second model's map; returns the map as JSON."""
    return view(checkpoint, method, n, here, progress, colour, compare)


@friendly
@zerogpu.gpu("latent_map")
def latent_map_auto(checkpoint, method, n, here, key, progress=gr.Progress(), colour="label", compare=""):
    """On opening the tab: draw the map unless the one shown is already up to date."""
    if not checkpoint:
        return {"note": "No models yet: train one in the Train tab."}
    wanted = map_key(checkpoint, str(method).lower(), whole(n, "n", 1, 10**6), here,
                     inference.check_colour(colour), compare or "")
    if key == wanted:
        return {}
    return view(checkpoint, method, n, here, progress, colour, compare)


def _map_click(key, evt: gr.EventData) -> tuple[dict, str]:
    """The click's data and the model of the map clicked, once a map is drawn (``key`` says which)."""
    if not key:
        raise ValueError("Draw the map first.")
    data = event_data(evt)
    return data, key.get("compare") if data.get("which") == "b" and key.get("compare") else key["checkpoint"]


@friendly
@zerogpu.gpu("reconstruct")
def map_point(key, evt: gr.EventData):
    """A click on a point: that digit and the model's reconstruction of it."""
    data, checkpoint = _map_click(key, evt)
    index = within(data.get("index"), "The digit number", 0, inference.MAP_SIZE - 1)
    label = int(inference.bundled()[1][index])
    # A cvae is given the digit's true label, as the map's codes and its colours were.
    r = inference.reconstruct(index, checkpoint, n_samples=0, label=label)
    text = (f"**Digit #{index}** (label {label}): original on the left, reconstruction by {checkpoint} on the "
            f"right. Error {r.mse:.4f} per pixel.")
    return {"original": gr.update(value=digit(r.input, 6), label=f"Original #{index}"),
            "recon": gr.update(value=digit(r.recon, 6), label="Reconstruction"), "picked": text}


@friendly
@zerogpu.gpu("reconstruct")
def map_space(key, evt: gr.EventData):
    """A click on empty space: decode the code behind that place of the map."""
    data, checkpoint = _map_click(key, evt)
    x, y = data.get("x"), data.get("y")
    p = inference.decode_at(checkpoint, key["method"], x, y)
    how = {"pca": "the exact inverse of PCA", "tsne": "a weighted average of the 10 nearest codes",
           "umap": "a weighted average of the 15 nearest codes (UMAP's approximate inverse)"}[key["method"]]
    text = f"**Decoded the place ({float(x):.2f}, {float(y):.2f})** of {checkpoint}'s map using {how}."
    if p.far:
        text += "\n\n**Far from the data:** no digit on the map lies near this place, so the decode is a guess."
    return {"decoded": gr.update(value=digit(p.image, 6), label="Decoded at the clicked place"), "picked": text}


@zerogpu.gpu("reconstruct")
def decode_place(place: Any) -> list[float]:
    """The page's fallback while hovering when it cannot decode itself: the digit at a place of a map,
    ``{"checkpoint", "method", "x", "y"}``, as 784 probabilities (rounded to 1/1000) by ``inference.decode_at``,
    the rule the page mirrors. (A gr.HTML server function takes one argument.)"""
    place = place if isinstance(place, dict) else {}
    try:
        p = inference.decode_at(need(place.get("checkpoint")), str(place.get("method", "")), place.get("x"),
                                place.get("y"))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    return np.round(p.image.astype(np.float64).reshape(-1), 3).tolist()


@friendly
@zerogpu.gpu("reconstruct")
def decode_codes(checkpoint: str, codes: list[list[float]], labels: list[int] | None = None) -> list[list[float]]:
    """Decode codes you computed yourself (for instance a place of the map through the inverse that /latent_map's
    payload carries under "live"): N lists of D numbers in, N lists of 784 pixel probabilities (row by row,
    rounded to 1/10000) out. A conditional model needs labels: one for all the codes or one per code."""
    images = inference.decode_codes(need(checkpoint), codes, labels)
    return np.round(images.astype(np.float64).reshape(len(images), -1), 4).tolist()


@dataclass
class MapTab:
    model: gr.Dropdown


def render(tab: gr.Tab, options: list[tuple[str, str]], here: gr.State) -> MapTab:
    """Build the tab's components inside ``tab`` and wire its events."""
    private = {"api_visibility": "private"}
    shown = gr.State(None)  # what the latent map shows: checkpoint, method, n, here (colour, compare when set)
    with gr.Row():
        map_ck = checkpoint_dropdown(options, elem_id="map-checkpoint")
        cmp_ck = checkpoint_dropdown([NONE_CHOICE, *options], "Compare with",
                                     "A second model's map of the same digits, linked to the first.",
                                     elem_id="map-compare", value="")
        method = gr.Radio([("PCA (instant)", "pca"), ("t-SNE (slower the first time)", "tsne"),
                           ("UMAP (slower the first time)", "umap")], value="pca",
                          label="Projection to 2-D", elem_id="map-method")
    with gr.Row():
        colour = gr.Dropdown(COLOUR_CHOICES, value="label", label="Colour by", elem_id="map-colour",
                             filterable=False)
        size = NumberSlider(500, inference.MAP_SIZE, value=MAP_DEFAULT_N, step=500, label="Digits on the map",
                            elem_id="map-n")
        draw = gr.Button("Draw map", variant="primary", elem_id="map-draw", scale=0)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            lmap = gr.HTML(value=None, label="Map data (JSON)", html_template=read_static("latent_map.html"),
                           css_template=read_static("latent_map.css"),
                           js_on_load=read_static("live_decode.js") + read_static("latent_map.js"),
                           head=f'<script src="{STATIC_ROUTE}/plotly.min.js"></script>' + LIVE_HEAD,
                           elem_id="latent-map", min_height=600, apply_default_css=False,
                           server_functions=[decode_place])
        with gr.Column(scale=1, min_width=260):
            note = gr.Markdown("Hover a point to see its digit. Click a point to see its reconstruction; click "
                               "empty space to decode that place.", label="About this map", elem_id="map-note")
            with gr.Row():
                original = out_image("Original: click a point", "map-original", height=180)
                recon = out_image("Reconstruction", "map-recon", height=180)
            decoded = out_image("Decoded: click empty space", "map-decoded", height=180)
            picked = gr.Markdown(label="What you clicked", elem_id="map-picked")
    manifold = out_image("Decoded grid over the 2-D latent plane", "map-manifold", visible=False, height=460)
    tools = map_tools.render(map_ck, lmap, here)

    out = Outputs(map=lmap, manifold=manifold, note=note, key=shown)
    clicks = Outputs(original=original, recon=recon, decoded=decoded, picked=picked)
    inputs = [map_ck, method, size, here, colour, cmp_ck]
    # /latent_map keeps its three inputs (checkpoint, method, n), so clients written for it go on working; the
    # page's own button also sends the colouring and the compared model.
    api_only = gr.Button(visible=False)
    api_only.click(out.bind(latent_map), [map_ck, method, size, here], list(out), api_name="latent_map")
    gr.api(decode_codes, api_name="decode")
    gr.on([draw.click, map_ck.input, method.input, colour.input, cmp_ck.input], out.bind(latent_map), inputs,
          list(out), **private)
    tab.select(refresh_checkpoint, map_ck, map_ck, show_progress="hidden", **private).then(
        refresh_compare, cmp_ck, cmp_ck, show_progress="hidden", **private).then(
        out.bind(latent_map_auto), [map_ck, method, size, here, shown, colour, cmp_ck], list(out), **private)
    lmap.point_click(clicks.only("original", "recon", "picked").bind(map_point), shown,
                     list(clicks.only("original", "recon", "picked")), show_progress="hidden", **private)
    lmap.space_click(clicks.only("decoded", "picked").bind(map_space), shown,
                     list(clicks.only("decoded", "picked")), show_progress="hidden", **private)
    map_tools.wire(tools, shown)
    return MapTab(map_ck)
