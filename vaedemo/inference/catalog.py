"""Which models there are and what the UI needs to know about each: labels, sizes, how sampling works."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import __version__
from ..checkpoints import scan_checkpoints
from ..device import pick_device
from ..models import kind_label
from ..runs import APP_COMMAND
from .stats import is_implicit, prior_gaussian
from .store import STORE

VISITOR_MARK = " · visitor run"  # ends the label of a checkpoint trained by a visitor in the app


def checkpoint_choices() -> list[tuple[str, str]]:
    """(label, name) for every checkpoint that loads, e.g. ('vae-mnist · VAE · latent 200', 'vae-mnist');
    runs trained in the app are marked as visitor runs and listed after the others. Models registered in
    memory (``vaedemo.serve(models=...)``) come first, marked as yours."""
    yours = STORE.registered()
    infos = [i for i in scan_checkpoints() if i.ok and i.name not in yours]
    infos.sort(key=lambda i: i.command == APP_COMMAND)  # stable: by name within each group
    return [*map(registered_choice, yours)] + [
        (
            f"{i.name} · {kind_label(i.kind)} · latent {i.latent_dim}"
            + (VISITOR_MARK if i.command == APP_COMMAND else ""),
            i.name,
        )
        for i in infos
    ]


def registered_choice(name: str) -> tuple[str, str]:
    """(label, name) of a model registered in memory, e.g. ('mine · VAE · latent 8 · your model', 'mine')."""
    model = STORE.get(name)
    return f"{name} · {'VAE' if model.variational else 'AE'} · latent {model.latent_dim} · your model", name


def broken_checkpoints() -> list[tuple[str, str]]:
    """(name, reason) for every checkpoint folder that does not load."""
    return [(i.name, i.reason) for i in scan_checkpoints() if not i.ok]


def checkpoint_info(checkpoint: str) -> dict:
    """What the UI needs to adapt to a model: kind, sizes, and how sampling works for it."""
    entry = STORE.entry(checkpoint)
    m = entry.model
    typical = None  # the root-mean-square length of a prior draw: sqrt(sum_d mean_d² + var_d)
    if is_implicit(m):
        typical = math.sqrt(m.latent_dim)
        note = (
            "A GAN's generator turns noise z ~ N(0, T²·I) into digits. It defines no p(x): it can sample, "
            "but it cannot say how likely a digit is."
        )
    elif not m.variational:
        note = (
            "A plain autoencoder has no prior, so samples come from a Gaussian fitted to the codes of "
            "the bundled digits."
        )
    else:
        mean, scale = prior_gaussian(entry)
        typical = math.sqrt(float((mean**2 + np.diag(scale) ** 2).sum()))
        note = (
            "Samples are decoded from z ~ N(0, T²·I)."
            if m.prior is None
            else f"This model learnt its prior: a mixture of {len(m.prior.means)} Gaussians placed where digits' "
            "codes lie. Each sample picks one at random and draws from it, its spread scaled by T."
        )
    return {
        "name": entry.name,
        "kind": m.kind,
        "kind_label": kind_label(m.kind),
        "latent_dim": m.latent_dim,
        "variational": m.variational,
        "conditional": m.conditional,
        "implicit": is_implicit(m),
        "num_classes": int(getattr(m.config, "num_classes", 10)),
        "sampling_note": note,
        "typical_norm": typical,
        "class_names": entry.config.get("class_names") or [str(i) for i in range(10)],
        "metrics": (entry.config.get("metrics") or {}).get("validation", {}),
    }


def model_health() -> dict:
    """Version, device, torch and the checkpoints loaded in memory (nothing is loaded or computed)."""
    try:
        device = str(pick_device())
    except ValueError as e:
        device = f"unavailable ({e})"
    return {
        "status": "ok",
        "version": __version__,
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "loaded_checkpoints": STORE.loaded(),
    }


YARDSTICK_KEYS = ("confident_share", "class_entropy", "frechet_distance", "precision", "recall")


def yardsticks() -> list[dict]:
    """One row per checkpoint whose card records sample metrics (``evaluate --samples --record``): its
    kind, whether it is implicit, its −ELBO (None for a GAN or an AE) and the sample yardsticks."""
    rows = []
    for info in scan_checkpoints():
        if not info.ok:
            continue
        recorded = (info.metrics or {}).get("evaluation") or {}
        samples = recorded.get("samples") or {}
        if not samples:
            continue
        rows.append(
            {
                "name": info.name,
                "kind": info.kind,
                "label": kind_label(info.kind),
                "neg_elbo": recorded.get("neg_elbo"),
                **{k: samples.get(k) for k in YARDSTICK_KEYS},
            }
        )
    return rows
