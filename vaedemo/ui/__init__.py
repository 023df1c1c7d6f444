"""The Gradio app: one module per tab (``reconstruct``, ``latent_map``, ``sample``, ``train``, ``about``), each
with a ``render()`` that builds and wires it; ``app`` lays out the page and ``server`` mounts and serves it.

Gradio and layout only: handlers call ``vaedemo.inference`` (numpy, PIL and Plotly in and out), return
``{output name: value}`` and turn ValueErrors into gr.Error sentences; per-user state lives in gr.State.
"""

from .about import health
from .app import build_demo
from .server import build_app, serve, server_address, setup

__all__ = ["build_app", "build_demo", "health", "serve", "server_address", "setup"]
