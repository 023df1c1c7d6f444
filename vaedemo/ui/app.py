"""The page: a header and five tabs, each built by its own module, and what a new visitor sees first."""

from __future__ import annotations

import gradio as gr

from . import about, latent_map, reconstruct, sample, train
from .shared import NONE_CHOICE, Outputs, choices, friendly, pick

QUEUE_SIZE = 64  # requests waiting at most; more get "the queue is full"
CONCURRENCY = 2  # requests of one kind run at once (the Space has 2 CPU cores)

CSS = """
.digit img, .digit canvas, img.digit { image-rendering: pixelated; image-rendering: crisp-edges; }
.digit img { object-fit: contain; }
.vd-progress { height: 14px; background: var(--neutral-200); border-radius: 7px; overflow: hidden; margin: 4px 0; }
.vd-bar { height: 100%; background: var(--color-accent); transition: width 0.4s; }
.vd-progress-text { font-size: 0.95rem; }
#vd-header h1 { margin-bottom: 0; }
#vd-header p { margin-top: 0.2rem; color: var(--body-text-color-subdued); }
.vd-hint { color: var(--body-text-color-subdued); font-size: 0.9rem; }
.vd-caption p { margin: 0.4rem 0 -0.3rem 0; }
.vd-thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.vd-thumb { margin: 0; text-align: center; }
.vd-thumb div { image-rendering: pixelated; image-rendering: crisp-edges; border-radius: 4px; }
.vd-thumb figcaption { font-size: 0.85rem; color: var(--body-text-color-subdued); margin-top: 2px; }
"""

# Gradio's sketchpad starts with no tool selected; choose the brush so a visitor can draw at once.
PAGE_JS = """
() => {
  let tries = 0;
  const timer = setInterval(() => {
    const brush = document.querySelector('#rec-sketch button[aria-label="Brush"]');
    if (brush) brush.click();
    if (brush || ++tries > 150) clearInterval(timer);
  }, 200);
}
"""

HEADER = """
# vaedemo: what does an autoencoder learn?
Draw or upload a digit and watch a model squeeze it into a few numbers and rebuild it. Compare a plain
autoencoder with a VAE, explore the latent map, sample new digits, or train your own model.
"""


@friendly
def page_view() -> dict:
    """What a new visitor gets: fresh model lists (a shipped VAE preselected) and a first reconstruction."""
    fresh = choices()
    ck = pick(None, fresh)
    return {
        "list_rec": gr.update(choices=fresh, value=ck),
        "list_cmp": gr.update(choices=[NONE_CHOICE, *fresh], value=""),
        "list_map": gr.update(choices=fresh, value=ck),
        "list_smp": gr.update(choices=fresh, value=ck),
        "live_sketch": reconstruct.live_payload(ck),
        **reconstruct.first_view(ck),
    }


def build_demo() -> gr.Blocks:
    """The Blocks UI (no server); ``server.build_app`` mounts it."""
    options = choices()
    with gr.Blocks(
        title="vaedemo: autoencoders and VAEs on MNIST", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as demo:
        here = gr.State(None)  # this user's last Reconstruct input, (28, 28) float
        gr.Markdown(HEADER, elem_id="vd-header")
        with gr.Tabs(selected="reconstruct"):
            with gr.Tab("Reconstruct", id="reconstruct", elem_id="tab-reconstruct") as tab:
                rec = reconstruct.render(tab, options, here)
            with gr.Tab("Latent map", id="map", elem_id="tab-map") as tab:
                lmap = latent_map.render(tab, options, here)
            with gr.Tab("Sample", id="sample", elem_id="tab-sample") as tab:
                smp = sample.render(tab, options, here)
            model_lists = [rec.model, rec.compare, lmap.model, smp.model]
            with gr.Tab("Train", id="train", elem_id="tab-train") as tab:
                train.render(tab, model_lists)
            with gr.Tab("About", id="about", elem_id="tab-about"):
                about.render()

        shown = {n: c for n, c in rec.outputs.components.items() if n != "here"}
        page = Outputs(list_rec=rec.model, list_cmp=rec.compare, list_map=lmap.model, list_smp=smp.model,
                       live_sketch=rec.live, **shown)
        demo.load(page.bind(page_view), None, list(page), api_visibility="private")
    # api_open=False: /gradio_api/run/<endpoint> would skip the queue and its limits; clients join the queue
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE, api_open=False)
    return demo
