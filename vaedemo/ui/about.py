"""The About tab: AE against VAE as the lecture explains them (English and Korean), and the server's status."""

from __future__ import annotations

import gradio as gr

from .. import __version__, inference, jobs
from .latent_map import read_static


def health() -> dict:
    """/health: version, device, loaded checkpoints, training; cheap (nothing is loaded or computed)."""
    policy = jobs.training_policy()
    return {**inference.model_health(), "training_enabled": policy["enabled"],
            "training_busy": jobs.TRAINER.status()["busy"], "app": "vaedemo", "ui_version": __version__}


def render() -> None:
    """Build the tab's components inside the current gr.Tab, with the /health endpoint."""
    with gr.Tabs():
        with gr.Tab("English"):
            gr.Markdown(read_static("about_en.md"))
        with gr.Tab("한국어"):
            gr.Markdown(read_static("about_ko.md"))
    with gr.Accordion("Server status", open=False):
        health_btn = gr.Button("Check", size="sm")
        health_json = gr.JSON(label="/health")
    broken = inference.broken_checkpoints()
    if broken:
        gr.Markdown("**Checkpoints that could not be loaded:**\n\n" + "\n".join(f"- `{n}`: {why}" for n, why in broken))
    health_btn.click(health, None, health_json, api_name="health", queue=False)
