"""The Train tab: pick a model and its settings, then watch the curves, previews and a live map as it trains."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from .. import exports, jobs, plots
from ..data import DATASETS
from ..models import REGISTRY
from .components import NumberBox, NumberSlider, strip_image
from .shared import Outputs, friendly, refresh_checkpoint, refresh_compare, strip

MODEL_KINDS = [(REGISTRY[kind].title, kind) for kind in ("vae", "conv-vae", "cvae", "ae", "gan") if kind in REGISTRY]
PRIOR_CHOICES = [
    ("N(0, I), the standard VAE", 0),
    ("learnt: a mixture of 10 Gaussians", 10),
    ("learnt: a mixture of 100 Gaussians", 100),
]
PRIOR_INFO = "A learnt prior follows the codes, so more samples read as digits."
PRECISION_CHOICES = [
    ("auto (bf16 where native and faster)", "auto"),
    ("fp32", "fp32"),
    ("bf16 (mixed precision)", "bf16"),
]
CONCURRENCY = 4  # training streams followed at once (one run trains; the others are told it is busy)
CURVE_EVERY_S = 1.0  # the loss curve is redrawn at most this often while an epoch runs (each redraw costs the page)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def progress_html(u: jobs.TrainUpdate | None, text: str = "") -> str:
    if u is None:
        return f"<div class='vd-progress-text'>{text or 'Not started.'}</div>"
    pct = max(0.0, min(1.0, u.fraction)) * 100
    parts = [f"Epoch {u.epoch} of {u.epochs}" if u.epoch else "Starting", f"{pct:.0f}%"]
    if u.eta_s and not u.done:
        parts.append(f"about {duration(u.eta_s)} left")
    if u.samples_per_s:
        parts.append(f"{u.samples_per_s:,.0f} samples/s")
    return (
        f"<div class='vd-progress' role='progressbar' aria-valuenow='{pct:.0f}' aria-valuemin='0' "
        f"aria-valuemax='100'><div class='vd-bar' style='width:{pct:.1f}%'></div></div>"
        f"<div class='vd-progress-text'>{' · '.join(parts)}</div>"
    )


def _auto_name(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _same_curve(a: jobs.TrainUpdate, b: jobs.TrainUpdate | None) -> bool:
    """Whether two updates carry the same curve points (the job makes new lists whenever a point comes)."""
    return b is not None and a.steps is b.steps and a.gan_steps is b.gan_steps and a.history is b.history


def update_view(u: jobs.TrainUpdate, *, curve: bool = True, previews: bool = True) -> dict:
    """One training update → what the tab shows: always the progress and status, the loss curve when
    ``curve``, and the previews and live map when ``previews`` and the update carries them."""
    shown = {"progress": progress_html(u)}
    if curve and u.gan_steps:
        shown["loss"] = plots.gan_losses(u.gan_steps)
    elif curve and (u.history or u.steps):
        shown["loss"] = plots.loss_curves(u.history, steps=u.steps)
    if previews:
        shown.update(_preview_view(u))
    shown["status"] = u.message
    if u.error:
        shown["status"] = f"**Training failed:** {u.error}"
    elif u.done and u.checkpoint:
        shown["status"] = f"**Done.** {u.message} It is now in every model list."
    return shown


def _preview_view(u: jobs.TrainUpdate) -> dict:
    shown = {}
    if u.d_real is not None:
        shown["live"] = plots.score_histograms(u.d_real, u.d_fake)
    if u.preview_recon is not None:
        shown["recon"] = exports.image_grid(np.stack([u.preview_originals, u.preview_recon]), scale=3, pad=2)
    if u.prior_samples is not None:
        shown["prior"] = (
            exports.image_grid(u.prior_samples, ncols=8, scale=2, pad=2)
            if u.d_real is not None
            else strip(u.prior_samples)
        )
    if u.map_coords is not None:
        shown["live"] = _svg(
            plots.latent_scatter(
                u.map_coords, u.map_labels, marker_size=5, title=f"Validation codes after epoch {u.epoch}"
            )
        )
    return shown


def _svg(fig: go.Figure) -> go.Figure:
    """The figure with its WebGL traces drawn as SVG: redrawn every second or so while a run trains, a WebGL
    plot sets up a new GL context each time (in software where the browser has no GPU), an SVG one of 1,000
    points does not."""
    traces = [{**t.to_plotly_json(), "type": "scatter"} if t.type == "scattergl" else t for t in fig.data]
    return go.Figure(data=traces, layout=fig.layout)


def changed_views(
    updates: Iterator[jobs.TrainUpdate], curve_every_s: float = CURVE_EVERY_S
) -> Iterator[tuple[jobs.TrainUpdate, dict]]:
    """Each update with what the page needs for it, built only where something changed: the training thread
    shares this process, so every figure drawn here is time taken from it. The previews and the map go
    when new ones came (the job makes them at most about once a second); the curve when it has new points,
    at most once per ``curve_every_s`` but at once for an epoch's validation point; the run's last update
    carries all of them."""
    drawn: jobs.TrainUpdate | None = None  # the update whose curve the page shows
    drawn_at = -math.inf
    previews_shown = 0
    for u in updates:
        now = time.monotonic()
        has_curve = bool(u.steps or u.gan_steps or u.history)
        epoch_point = drawn is None or len(u.history) != len(drawn.history)
        if u.done:  # the last update carries everything, for an API client that reads only that one
            yield u, update_view(u)
            continue
        curve = has_curve and not _same_curve(u, drawn) and (epoch_point or now - drawn_at >= curve_every_s)
        if curve:
            drawn, drawn_at = u, now
        previews = u.previews_seq != previews_shown
        previews_shown = u.previews_seq
        yield u, update_view(u, curve=curve, previews=previews)


@friendly
def train(
    model="vae",
    dataset="mnist-10k",
    latent_dim=2,
    beta=1.0,
    epochs=5,
    batch_size=128,
    lr=0.001,
    name="",
    prior=0,
    precision="auto",
):
    """/train (streaming): start a run and yield progress, loss curves, previews and the live map."""
    policy = jobs.training_policy()
    if not policy["enabled"]:
        raise ValueError("Training is turned off on this server.")
    vae = model not in ("ae", "gan")
    spec = {
        "model": model,
        "dataset": dataset,
        "latent_dim": latent_dim,
        "beta": beta if vae else None,
        "prior_components": prior if vae else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "precision": precision or "auto",
        "name": (name or "").strip() or _auto_name(str(model)),
    }
    job = jobs.TRAINER.start(spec)
    yield from _follow(job, spec["name"])


def _follow(job: str, name: str):
    """Stream a run's updates to the page until it ends; a browser that goes away stops the run."""
    yield {"progress": progress_html(None, "Starting…"), "status": f"Training **{name}**…", "job": job}
    finished = False
    try:
        for u, view in changed_views(jobs.TRAINER.events(job)):
            if u.done:
                finished = True
                yield {**view, "job": None}
                return
            yield {**view, "job": job}
    finally:
        if not finished:  # the browser went away: free the server for someone else
            try:
                jobs.TRAINER.stop(job)
            except ValueError:
                pass


def interrupted_runs() -> list[tuple[str, str]]:
    """(label, name) of the runs that were cut off (a crash, a restart) and can be continued."""
    from ..runs import partial_runs

    return [(f"{p.name} · {p.kind} · epoch {p.epochs_done} of {p.planned}", p.name) for p in partial_runs()]


def resume_controls() -> dict:
    options = interrupted_runs()
    return {
        "row": gr.update(visible=bool(options)),
        "choice": gr.update(choices=options, value=options[0][1] if options else None),
    }


@friendly
def resume(name):
    """Continue an interrupted run from its last saved epoch."""
    job = jobs.TRAINER.resume(name)
    yield from _follow(job, str(name))


@friendly
def stop_training(job):
    if not job:
        return "Nothing to stop: no run of yours is going."
    if not jobs.TRAINER.stop(job):
        return "The run has already ended."
    return "Stopping after the current batch; the best finished epoch is saved."


def train_status():
    s = jobs.TRAINER.status()
    if not s["busy"]:
        return "No training run is going: you can start one."
    return (
        f"**Busy:** the trainer is working on **{s['name']}** ({100 * s['fraction']:.0f}% done, about "
        f"{duration(s['eta_s'])} left). You can start a run once it ends."
    )


def on_model_kind(kind):
    vae = kind not in ("ae", "gan")
    why = {"ae": "A plain AE has", "gan": "A GAN has"}.get(kind, "")
    return (
        gr.update(interactive=vae, info="β weighs the KL term (β-VAE)." if vae else f"{why} no KL term."),
        gr.update(interactive=vae, info=PRIOR_INFO if vae else f"{why} no learnt prior: it samples N(0, I)."),
    )


def refresh_all(rec, cmp, map_, smp) -> tuple:
    """After a run: every model list gets the new checkpoint (the selections stay)."""
    return refresh_checkpoint(rec), refresh_compare(cmp), refresh_checkpoint(map_), refresh_checkpoint(smp)


@dataclass
class TrainTab:
    enabled: bool


def _caps(policy: dict) -> str:
    caps = [f"at most {policy['max_epochs']} epochs"]
    if policy["max_train_items"]:
        caps.append(f"{policy['max_train_items']:,} training digits")
    if policy["max_train_seconds"]:
        caps.append(f"{duration(policy['max_train_seconds'])} per run")
    text = "This server allows " + ", ".join(caps) + "; one run at a time."
    if policy.get("max_visitor_runs"):
        text += (
            f" Runs trained here are listed as visitor runs and the newest {policy['max_visitor_runs']} are "
            "kept: the oldest is removed first."
        )
    return text


def render(tab: gr.Tab, model_lists: list[gr.Dropdown]) -> TrainTab:
    """Build the tab inside ``tab``; ``model_lists`` (Reconstruct, Compare, Map, Sample) get a finished run."""
    private = {"api_visibility": "private"}
    policy = jobs.training_policy()
    if not policy["enabled"]:
        gr.Markdown(
            "### Training is turned off on this server\nThis public demo only runs the models it ships with, "
            "so that one visitor's run cannot slow everyone down. To train your own, run the app on your "
            "machine (`make run`) or use `python -m vaedemo train`.",
            elem_id="train-off",
        )
        return TrainTab(False)
    job = gr.State(None)  # this user's training job id
    busy_md = gr.Markdown(train_status(), elem_id="train-busy")
    waiting = interrupted_runs()
    with gr.Row(visible=bool(waiting), elem_id="train-resume") as resume_row:
        gr.Markdown(
            "**An interrupted run can be continued** from its last saved epoch (a run is saved at "
            "every epoch's end, so a crash or a restart loses at most one epoch)."
        )
        resume_choice = gr.Dropdown(
            waiting,
            value=waiting[0][1] if waiting else None,
            label="Interrupted run",
            filterable=False,
            elem_id="train-resume-choice",
        )
        resume_btn = gr.Button("Continue it", elem_id="train-resume-go", scale=0)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            t_model = gr.Dropdown(MODEL_KINDS, value="vae", label="Model", filterable=False)
            t_data = gr.Dropdown(
                list(DATASETS),
                value="mnist-10k",
                label="Dataset",
                info="mnist-10k ships with the app; the others download once.",
                filterable=False,
            )
            t_latent = NumberBox(
                value=2,
                label="Latent size",
                precision=None,
                minimum=1,
                maximum=1024,
                info="2 draws a map you can read directly, plus a manifold grid.",
            )
            t_beta = NumberBox(value=1.0, label="β", precision=None, minimum=0, info="β weighs the KL term (β-VAE).")
            t_prior = gr.Dropdown(
                PRIOR_CHOICES, value=0, label="Prior", info=PRIOR_INFO, filterable=False, elem_id="train-prior-kind"
            )
            t_epochs = NumberSlider(
                1,
                policy["max_epochs"],
                value=min(5, policy["max_epochs"]),
                step=1,
                label="Epochs",
                elem_id="train-epochs",
            )
            t_batch = gr.Dropdown([32, 64, 128, 256, 512], value=128, label="Batch size", filterable=False)
            t_lr = NumberBox(value=0.001, label="Learning rate", precision=None, minimum=0)
            t_precision = gr.Dropdown(
                PRECISION_CHOICES,
                value="auto",
                label="Precision",
                filterable=False,
                info="bf16 runs the networks about twice as fast where the CPU has it; the losses stay float32.",
                elem_id="train-precision",
            )
            t_name = gr.Textbox(
                value="", label="Name", placeholder="left empty: vae-<date>-<time>", max_length=64, elem_id="train-name"
            )
            with gr.Row():
                t_start = gr.Button("Start", variant="primary", elem_id="train-start")
                t_stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
            gr.Markdown(_caps(policy), elem_classes=["vd-hint"])
        with gr.Column(scale=3):
            t_progress = gr.HTML(progress_html(None), label="Progress", elem_id="train-progress", js_on_load=None)
            t_status = gr.Markdown(label="Status", elem_id="train-status")
            with gr.Row():
                t_loss = gr.Plot(plots.loss_curves([]), label="Loss", elem_id="train-loss")
                t_live = gr.Plot(label="Live latent map (fixed PCA axes)", elem_id="train-map")
            with gr.Row():
                with gr.Column():
                    t_recon = strip_image("Validation digits (top) and their reconstructions (bottom)", "train-recon")
                with gr.Column():
                    t_prior_img = strip_image("Samples from the prior", "train-prior")

    out = Outputs(
        progress=t_progress, loss=t_loss, recon=t_recon, prior=t_prior_img, live=t_live, status=t_status, job=job
    )
    t_model.change(on_model_kind, t_model, [t_beta, t_prior], show_progress="hidden", **private)
    t_start.click(
        out.bind(train),
        [t_model, t_data, t_latent, t_beta, t_epochs, t_batch, t_lr, t_name, t_prior, t_precision],
        list(out),
        api_name="train",
        concurrency_limit=CONCURRENCY,
        show_progress="hidden",
    ).then(refresh_all, model_lists, model_lists, show_progress="hidden", **private)
    resume_btn.click(out.bind(resume), resume_choice, list(out), concurrency_limit=CONCURRENCY, **private).then(
        refresh_all, model_lists, model_lists, show_progress="hidden", **private
    )
    t_stop.click(stop_training, job, t_status, concurrency_limit=None, **private)
    resumable = Outputs(row=resume_row, choice=resume_choice)
    tab.select(train_status, None, busy_md, show_progress="hidden", **private).then(
        resumable.bind(resume_controls), None, list(resumable), show_progress="hidden", **private
    )
    return TrainTab(True)
