"""The Latent map tab's selections: lasso or box digits into A and B, see and download them, and move any digit
along the attribute vector mean(A) − mean(B) (``/attribute``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from .. import exports, inference, zerogpu
from ..inference import browser
from ..validation import choice, whole
from .components import DigitImage, NumberBox, NumberSlider, out_image, strip_image
from .live import b64_array, live_widget
from .shared import Outputs, digit, event_data, export_path, friendly, here_digit, need

GRID_MAX = 200  # digits drawn in a selection's grid; the downloads hold all of them
SLOTS = ("a", "b")
STRIP_TEXT = ", ".join(f"{s:g}" for s in inference.STRENGTHS)


def index_text(indices: np.ndarray) -> str:
    return ", ".join(str(int(i)) for i in indices)


def selection_view(checkpoint: str, slot: str, indices: Any) -> dict:
    """A selection's grid, its count and labels, and its PNG and CSV downloads, by output name."""
    sel = inference.selection(indices)
    shown = sel.images[:GRID_MAX]
    ncols = min(20, max(1, math.ceil(math.sqrt(len(shown) * 2))))
    grid = exports.image_grid(shown, ncols=ncols, scale=2, pad=1)
    name = slot.upper()
    summary = f"**Selection {name}: {sel.summary()}**" + (
        f" (the grid shows the first {GRID_MAX}; the downloads hold all)" if len(sel.indices) > GRID_MAX else "")
    png = export_path(f"selection-{name}-{checkpoint}.png")
    png.write_bytes(exports.to_png_bytes(exports.image_grid(sel.images, ncols=ncols, pad=2)))
    csv = export_path(f"selection-{name}-{checkpoint}.csv")
    csv.write_bytes(inference.selection_csv(checkpoint, sel.indices))
    return {f"text_{slot}": index_text(sel.indices), f"grid_{slot}": gr.update(value=grid, visible=True),
            f"sum_{slot}": summary, f"png_{slot}": gr.update(value=str(png), visible=True),
            f"csv_{slot}": gr.update(value=str(csv), visible=True)}


@friendly
def map_select(key, evt: gr.EventData):
    """A lasso or box on the map: its digits become selection A or B (the widget says which)."""
    if not key:
        raise ValueError("Draw the map first.")
    data = event_data(evt)
    slot = choice(str(data.get("slot", "a")).lower(), "selection", SLOTS)
    indices = data.get("indices") or []
    if not indices:
        return {f"text_{slot}": gr.update()}  # an empty dict would read as one output's value
    return selection_view(key["checkpoint"], slot, indices)


def _typed(slot: str):
    @friendly
    def typed(key, text):
        """Digit numbers typed into a selection's box: show them as if lassoed."""
        if not key or not str(text or "").strip():
            return {f"text_{slot}": gr.update()}
        return selection_view(key["checkpoint"], slot, text)
    return typed


def _digit(image: Any, index: Any) -> Any:
    """The digit to move: an upload wins, else a dataset digit number."""
    if image is not None:
        return inference.digit_input(image)
    if index is None or index == "":
        raise ValueError("Give a digit to move: upload one, type a dataset number (0-9999) or use your "
                         "Reconstruct digit.")
    return whole(index, "The digit number", 0, inference.MAP_SIZE - 1)


def _labelled(strengths: np.ndarray) -> str:
    return "Strengths, left to right: " + ", ".join(f"{s:+g}" for s in strengths) + "."


@friendly
@zerogpu.gpu("latent_map")
def attribute(checkpoint, selection_a, selection_b="", image=None, index=0, strengths=STRIP_TEXT):
    """/attribute: the digit moved along mean(A) − mean(B) (B empty: every other digit), one image per strength."""
    checkpoint = need(checkpoint)
    vector = inference.attribute_vector(checkpoint, selection_a, selection_b)
    moved = inference.apply_attribute(checkpoint, _digit(image, index), vector, strengths)
    return {"strip": exports.image_grid(moved.images, ncols=len(moved.images), scale=3, pad=2),
            "note": vector.note() + "\n\n" + _labelled(moved.strengths)}


@friendly
@zerogpu.gpu("reconstruct")
def attribute_at(checkpoint, selection_a, selection_b, image, index, strength):
    """The strength slider: the digit at that one strength (nothing until selection A exists)."""
    if not checkpoint or not str(selection_a or "").strip():
        return {"one": gr.update()}  # an empty dict would be taken as the picture itself
    vector = inference.attribute_vector(checkpoint, selection_a, selection_b)
    moved = inference.apply_attribute(checkpoint, _digit(image, index), vector, [strength])
    return {"one": gr.update(value=digit(moved.images[0], 6), label=f"Strength {moved.strengths[0]:+g}")}


@friendly
@zerogpu.gpu("latent_map")
def live_attribute(checkpoint, selection_a, selection_b, image, index):
    """The digit's code and the direction for the page's live strength slider (live_grid.js), after /attribute:
    z + s·Δ decoded in the browser while the slider moves."""
    checkpoint = need(checkpoint)
    vector = inference.attribute_vector(checkpoint, selection_a, selection_b)
    code, label = inference.attribute_start(checkpoint, _digit(image, index), vector)
    payload = {
        "kind": "attribute",
        "checkpoint": checkpoint,
        "model": browser.browser_model(checkpoint),
        "code": b64_array(code.astype(np.float32)),
        "direction": b64_array(vector.direction.astype(np.float32)),
        "label": label,
    }
    return {"live": json.dumps(payload, separators=(",", ":"))}


@dataclass
class Tools:
    checkpoint: gr.Dropdown
    lmap: gr.HTML
    here: gr.State
    selections: Outputs
    texts: dict
    attribute_inputs: list
    attribute_out: Outputs
    one: Outputs
    slider: Any
    live: Outputs
    att_go: gr.Button
    use_here: gr.Button
    att_img: Any


def render(checkpoint: gr.Dropdown, lmap: gr.HTML, here: gr.State) -> Tools:
    """The selection panels and the attribute vector, under the map."""
    parts: dict = {}
    gr.Markdown("### Select, then act\nDrag a **lasso** or a **box** on the map (the tools above it); the widget's "
                "switch says whether it fills selection A or B. The attribute vector is mean(A) − mean(B) — "
                "or mean(A) minus every other digit when B is empty — and moves any digit from B's kind towards "
                "A's: select slanted ones as A and upright ones as B, then slant your own digit.",
                elem_classes=["vd-hint"])
    with gr.Row(equal_height=False):
        for slot in SLOTS:
            name = slot.upper()
            with gr.Column():
                parts[f"text_{slot}"] = gr.Textbox(
                    label=f"Selection {name}: digit numbers" + (" (empty: every other digit)" if slot == "b" else ""),
                    lines=2, max_lines=4, elem_id=f"map-sel-{slot}",
                    info="Filled by a lasso or box on the map; or type numbers and press Enter.")
                parts[f"sum_{slot}"] = gr.Markdown(elem_id=f"map-sum-{slot}")
                parts[f"grid_{slot}"] = out_image(f"Selection {name}", f"map-grid-{slot}", visible=False,
                                                  buttons=[], height=320)
                with gr.Row():
                    parts[f"png_{slot}"] = gr.DownloadButton(f"Download {name} as PNG", visible=False, size="sm",
                                                             elem_id=f"map-png-{slot}")
                    parts[f"csv_{slot}"] = gr.DownloadButton(f"Download {name} as CSV (numbers, labels, codes)",
                                                             visible=False, size="sm", elem_id=f"map-csv-{slot}")
    gr.Markdown("#### Attribute vector: mean(A) − mean(B)")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240):
            att_img = DigitImage(label="Digit to move (optional upload)", type="filepath",
                                 sources=["upload", "clipboard"], format="png", height=160, elem_id="map-att-image")
            att_idx = NumberBox(value=0, label="…or dataset digit #", precision=None, elem_id="map-att-index")
            use_here = gr.Button("Use my Reconstruct digit", size="sm")
            strengths = gr.Textbox(STRIP_TEXT, label="Strengths for the strip (−3 to +3)", elem_id="map-att-strengths")
            att_go = gr.Button("Apply the direction", variant="primary", elem_id="map-att-go")
        with gr.Column(scale=3):
            strip = strip_image("The digit moved along A − B, one column per strength", "map-att-strip")
            att_note = gr.Markdown(elem_id="map-att-note")
            with gr.Row(equal_height=False):
                slider = NumberSlider(-3, 3, value=1.0, step=0.25, label="Strength", elem_id="map-att-strength",
                                      info="0 is the digit itself; +1 adds the whole gap from B's mean to A's.")
                one = out_image("At the slider's strength", "map-att-one", height=200)
            live = live_widget("map-att-live")  # the same, decoded in the browser while the slider moves
    selections = Outputs(**parts)
    return Tools(checkpoint, lmap, here, selections, {s: parts[f"text_{s}"] for s in SLOTS},
                 [checkpoint, parts["text_a"], parts["text_b"], att_img, att_idx, strengths],
                 Outputs(strip=strip, note=att_note), Outputs(one=one), slider, Outputs(live=live), att_go, use_here,
                 att_img)


def wire(t: Tools, shown: gr.State) -> None:
    """Connect the selection and attribute events (``shown`` is the drawn map's key)."""
    private = {"api_visibility": "private"}
    t.lmap.map_select(t.selections.bind(map_select), shown, list(t.selections), show_progress="hidden", **private)
    for slot in SLOTS:
        panel = t.selections.only(*(f"{part}_{slot}" for part in ("text", "grid", "sum", "png", "csv")))
        t.texts[slot].submit(panel.bind(_typed(slot)), [shown, t.texts[slot]], list(panel), **private)
    one_inputs = [*t.attribute_inputs[:5], t.slider]
    applied = t.att_go.click(t.attribute_out.bind(attribute), t.attribute_inputs, list(t.attribute_out),
                             api_name="attribute")
    applied.then(t.one.bind(attribute_at), one_inputs, list(t.one), show_progress="hidden", **private)
    applied.success(t.live.bind(live_attribute), t.attribute_inputs[:5], list(t.live), show_progress="hidden",
                    **private)
    t.slider.change(t.one.bind(attribute_at), one_inputs, list(t.one), trigger_mode="always_last",
                    show_progress="hidden", **private)
    t.use_here.click(here_digit, t.here, t.att_img, **private)
