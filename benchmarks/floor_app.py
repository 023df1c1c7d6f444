"""The latency floor: a minimal Gradio app with one queued image-in, image-out endpoint (``/floor``).

``benchmarks/app_server.launched_floor`` starts it beside the real app, and the latency benchmark
times it with the same image and client as the app's endpoints, so a ratio to it is what the
app's own work and payloads cost on top of Gradio's queued round trip (join, server-sent events,
upload, one file back). Run as ``python -m benchmarks.floor_app``; it listens on
$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import os


def build():
    import gradio as gr

    with gr.Blocks(analytics_enabled=False) as demo:
        image = gr.Image(type="numpy", label="in", elem_id="floor-in")
        out = gr.Image(type="numpy", label="out", elem_id="floor-out")
        image.upload(lambda a: a, image, out, api_name="floor")  # queued, as every Gradio event is by default
    return demo


def main() -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    build().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7861")), ssr_mode=False, quiet=True)


if __name__ == "__main__":
    main()
