"""Plotly figures for the app: arrays and lists in, a figure out; presentation only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

# Ten distinguishable colours for the ten digit classes (Plotly's D3 palette).
CLASS_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _light_template() -> go.layout.Template:
    """plotly_white, cut to what this app's 2-D charts use: it looks the same, but Plotly copies the whole
    template into every figure, so the full one (about 10 KB: colour scales, polar, ternary, geo, 3-D axes and
    defaults for two dozen trace kinds) made building and sending a small figure several times slower."""
    full = pio.templates["plotly_white"]
    layout = {k: v for k, v in full.layout.to_plotly_json().items()
              if k in {"autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor",
                       "plot_bgcolor", "xaxis", "yaxis", "title", "shapedefaults", "annotationdefaults"}}
    data = {k: v for k, v in full.data.to_plotly_json().items() if k in {"bar", "scatter", "scattergl", "histogram"}}
    return go.layout.Template(layout=layout, data=data)


_LAYOUT = dict(template=_light_template(), margin=dict(l=50, r=20, t=50, b=45))

# history key → (legend name, line dash); the losses are per image, in nats
_CURVES = {
    "train_loss": ("train loss", "solid"),
    "val_loss": ("validation loss", "solid"),
    "val_recon": ("validation reconstruction", "dot"),
    "val_kl": ("validation KL", "dash"),
}


def _rows(history: Sequence[Any]) -> list[dict]:
    return [asdict(h) if is_dataclass(h) else dict(h) for h in (history or [])]


def loss_curves(
    history: Sequence[Any], title: str = "Loss per image (nats)", steps: Sequence[tuple[float, float]] | None = None
) -> go.Figure:
    """One line per loss over epochs; ``history`` is a list of EpochStats or their dicts.

    ``steps``: (epoch as a fraction, smoothed training loss) every few steps, drawn as the training
    curve (so it moves within an epoch) instead of the per-epoch training averages.
    """
    rows = _rows(history)
    fig = go.Figure()
    step_points = [(x, v) for x, v in (steps or []) if np.isfinite(v)]
    if step_points:
        xs, ys = zip(*step_points)
        fig.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                name="train loss (smoothed, every few steps)",
                mode="lines" if len(xs) > 30 else "lines+markers",  # a one-point line would not show at all
                line=dict(width=1.5),
            )
        )
    for key, (name, dash) in _CURVES.items():
        if key == "train_loss" and step_points:
            continue
        points = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(rows) if r.get(key) is not None]
        points = [(e, v) for e, v in points if np.isfinite(v)]
        if not points:
            continue
        epochs, values = zip(*points)
        fig.add_trace(go.Scatter(x=list(epochs), y=list(values), name=name, mode="lines+markers", line=dict(dash=dash)))
    fig.update_layout(
        title=dict(text=title),
        xaxis_title="epoch",
        yaxis_title="nats per image",
        legend=dict(orientation="h", y=-0.2),
        **_LAYOUT,
    )
    if not rows and not step_points:
        fig.add_annotation(text="No epochs finished yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def latent_scatter(
    coords: np.ndarray,
    labels: np.ndarray,
    *,
    indices: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    here: tuple[float, float] | None = None,
    title: str = "",
    marker_size: int = 4,
) -> go.Figure:
    """WebGL scatter of 2-D codes, one trace (and legend entry) per class; ``here`` marks one point.

    Each point's ``customdata`` is its index into the bundled digits, so a click can show it.
    """
    coords = np.asarray(coords, dtype=np.float32)
    labels = np.asarray(labels)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(labels):
        raise ValueError(f"Expected (N, 2) coordinates and N labels, got {coords.shape} and {labels.shape}.")
    indices = np.arange(len(coords)) if indices is None else np.asarray(indices)
    fig = go.Figure()
    for c in np.unique(labels):
        mask = labels == c
        name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else str(c)
        fig.add_trace(
            go.Scattergl(
                x=coords[mask, 0],
                y=coords[mask, 1],
                mode="markers",
                name=name,
                marker=dict(size=marker_size, color=CLASS_COLOURS[int(c) % len(CLASS_COLOURS)], opacity=0.7),
                customdata=indices[mask],
                hovertemplate=f"digit {name}<br>#%{{customdata}}<extra></extra>",
            )
        )
    if here is not None:
        fig.add_trace(
            go.Scatter(
                x=[float(here[0])],
                y=[float(here[1])],
                mode="markers",
                name="you are here",
                marker=dict(symbol="star", size=18, color="black", line=dict(color="white", width=2)),
            )
        )
    fig.update_layout(
        title=dict(text=title),
        xaxis_title="map x",
        yaxis_title="map y",
        legend=dict(title=dict(text="label"), itemsizing="constant"),
        dragmode="pan",
        **_LAYOUT,
    )
    return fig


def code_bars(
    mu: np.ndarray, sigma: np.ndarray | None = None, title: str = "The code: μ ± σ per dimension"
) -> go.Figure:
    """μ per latent dimension as bars, with ±σ error bars for a VAE (``sigma`` None for an AE)."""
    mu = np.asarray(mu, dtype=np.float32).ravel()  # float32: plotly sends arrays as base64, half the bytes
    error = None
    if sigma is not None:
        error = dict(type="data", array=np.asarray(sigma, dtype=np.float32).ravel(), visible=True)
    fig = go.Figure(go.Bar(x=np.arange(len(mu)), y=mu, error_y=error, name="μ"))
    fig.update_layout(
        title=dict(text=title), xaxis_title="latent dimension", yaxis_title="value", bargap=0.1, **_LAYOUT
    )
    return fig


def norm_paths(
    t: np.ndarray, lerp_norms: np.ndarray, slerp_norms: np.ndarray, typical_norm: float | None = None
) -> go.Figure:
    """‖z‖ along the straight (lerp) and spherical (slerp) paths; ``typical_norm`` draws the length
    typical of a prior draw for reference (√D under N(0, I)).

    Under a N(0, I) prior almost all mass lies near ‖z‖ = √D, so a straight path that dips
    well below it passes through codes the decoder rarely saw (White 2016, "Sampling generative networks").
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.asarray(t), y=np.asarray(lerp_norms), name="linear (lerp)", mode="lines+markers"))
    fig.add_trace(
        go.Scatter(x=np.asarray(t), y=np.asarray(slerp_norms), name="spherical (slerp)", mode="lines+markers")
    )
    if typical_norm is not None:
        fig.add_hline(y=float(typical_norm), line_dash="dot", annotation_text="typical under the prior")
    fig.update_layout(
        title=dict(text="Length of the code along each path"), xaxis_title="t", yaxis_title="‖z‖", **_LAYOUT
    )
    return fig


def kl_bars(dims_kl: Sequence[tuple[int, float]], title: str = "Average KL per latent dimension (nats)") -> go.Figure:
    """Bars in the order given (``dims_by_kl`` sorts them, largest first); the x labels are ``z<dim>``."""
    dims = [int(d) for d, _ in dims_kl]
    values = [float(v) for _, v in dims_kl]
    fig = go.Figure(
        go.Bar(
            x=[f"z{d}" for d in dims],
            y=values,
            customdata=dims,
            hovertemplate="dimension %{customdata}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=title),
        xaxis_title="latent dimension",
        yaxis_title="nats",
        xaxis=dict(type="category"),
        **_LAYOUT,
    )
    return fig


def gan_losses(steps: Sequence[tuple[float, float, float]], title: str = "GAN losses") -> go.Figure:
    """The generator's and the discriminator's losses every few steps: (epoch fraction, G, D) each."""
    fig = go.Figure()
    if steps:
        x, g, d = zip(*steps)
        fig.add_trace(go.Scatter(x=list(x), y=list(g), name="generator", mode="lines"))
        fig.add_trace(go.Scatter(x=list(x), y=list(d), name="discriminator", mode="lines"))
    else:
        fig.add_annotation(text="No steps yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(
        title=dict(text=title), xaxis_title="epoch", yaxis_title="loss", legend=dict(orientation="h", y=-0.2), **_LAYOUT
    )
    return fig


def score_histograms(d_real: np.ndarray, d_fake: np.ndarray, title: str = "The discriminator's P(real)") -> go.Figure:
    """Two histograms over [0, 1]: what the discriminator says of real digits and of generated ones.

    Apart (real near 1, generated near 0) the discriminator is winning; overlapping near 0.5 the
    generator fools it."""
    fig = go.Figure()
    bins = dict(start=0.0, end=1.0, size=0.05)
    fig.add_trace(go.Histogram(x=np.asarray(d_real, float), name="real digits", xbins=bins, opacity=0.6))
    fig.add_trace(go.Histogram(x=np.asarray(d_fake, float), name="generated", xbins=bins, opacity=0.6))
    fig.update_layout(
        title=dict(text=title),
        barmode="overlay",
        xaxis=dict(title="P(real)", range=[0, 1]),
        yaxis_title="digits",
        legend=dict(orientation="h", y=-0.2),
        **_LAYOUT,
    )
    return fig
