"""A whole training run as the CLI and the app start it: build or resume, train, evaluate, save."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from . import __version__
from .checkpoints import find, load_folder, read_tensors, resolve, save_checkpoint, validate_name
from .data import Dataset, load_dataset
from .metrics import evaluate
from .models import build_model
from .training import Progress, StopSignal, TrainConfig, TrainResult, dist_info, train
from .zerogpu import on_zerogpu, train_in_chunks

OPTIMIZER_FILE = "optimizer.safetensors"
APP_COMMAND = "vaedemo app"  # RunSpec.command of a run a visitor started in the app: a "visitor run"


@dataclass
class RunSpec:
    name: str
    model: str = "vae"
    dataset: str = "mnist-10k"
    latent_dim: int | None = None  # None: the model's default
    hidden_dim: int | None = None
    channels: tuple[int, int, int] | None = None  # conv widths of ae / conv-vae (default: the lecture's 8, 16, 32)
    beta: float | None = None
    prior_components: int = 0  # VAEs: 0 for N(0, I), K for a learnt mixture of K Gaussians
    max_train: int | None = None  # cap on training items (the app's public mode uses it)
    resume: bool = False  # continue checkpoint `name` (its weights and Adam state)
    overwrite: bool = False
    iwae_k: int = 100
    command: str = ""  # the command line that started the run, recorded in config.json
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


@dataclass
class RunOutcome:
    name: str
    result: TrainResult
    metrics: dict
    saved: bool


def model_overrides(spec: RunSpec) -> dict:
    """The model settings a run asks for (None: the default); ValueError for one the model does not have."""
    out = {"latent_dim": spec.latent_dim, "hidden_dim": spec.hidden_dim}
    if spec.channels is not None:
        if spec.model not in ("ae", "conv-vae"):
            raise ValueError("Only the convolutional models (ae, conv-vae) have channel widths to set.")
        out["channels"] = tuple(spec.channels)
    if spec.model != "ae":
        out["beta"] = spec.beta
        out["prior_components"] = spec.prior_components
    elif spec.prior_components:
        raise ValueError("A plain autoencoder has no prior to learn; pick a VAE.")
    elif spec.beta not in (None, 0):
        raise ValueError("A plain autoencoder has no KL term, so beta does not apply; pick a VAE.")
    return out


def run(spec: RunSpec, *, data: Dataset | None = None, progress: Callable[[Progress], None] | None = None,
        stop: StopSignal = None) -> RunOutcome:
    """Train as ``spec`` says and save checkpoint ``spec.name`` (unless stopped before an epoch ended)."""
    validate_name(spec.name)
    spec.train.validate()
    start_epoch, resume_state, previous = 0, None, []
    if spec.resume:
        model, old = load_folder(find(spec.name))
        start_epoch = int((old.get("training") or {}).get("epochs_done", 0))
        previous = old.get("history") or []
        opt_path = find(spec.name) / OPTIMIZER_FILE
        resume_state = read_tensors(opt_path) if opt_path.exists() else None
        spec.dataset = (old.get("data") or {}).get("dataset", spec.dataset)
    else:
        if resolve(spec.name).exists() and not spec.overwrite:
            raise ValueError(f"A checkpoint named {spec.name!r} already exists; choose another name.")
        torch.manual_seed(spec.train.seed)  # the starting weights depend on the seed alone
        model = build_model(spec.model, **model_overrides(spec))
    data = data or load_dataset(spec.dataset)
    data = data.limit(spec.max_train)
    if model.conditional and data.num_classes != getattr(model.config, "num_classes", 10):
        model = build_model(spec.model, **model_overrides(spec), num_classes=data.num_classes)

    if on_zerogpu() and not spec.resume:  # a GPU is lent per call there: train in chunks that fit one
        result = train_in_chunks(model, data, spec.train, progress=progress, stop=stop)
    else:
        result = train(model, data, spec.train, progress=progress, stop=stop,
                       resume_state=resume_state, start_epoch=start_epoch)
    if not result.history:  # stopped before the first epoch finished: nothing worth keeping
        return RunOutcome(spec.name, result, {}, saved=False)
    if dist_info()[0] != 0:  # under torchrun only rank 0 evaluates and writes
        return RunOutcome(spec.name, result, {}, saved=False)
    metrics = evaluate(result.model, data.x_val, data.y_val, iwae_k=spec.iwae_k if model.variational else 0)
    from safetensors.torch import save as st_save

    meta = {
        "vaedemo_version": __version__,
        "command": spec.command,
        "training": {**dataclasses.asdict(spec.train), "epochs_done": result.epochs_done,
                     "best_epoch": result.best_epoch, "stopped": result.stopped,
                     "optimizer": result.optimizer_meta},
        "data": data.describe(),
        "class_names": data.class_names,
        "metrics": {"validation": metrics},
        "history": previous + [dataclasses.asdict(h) for h in result.history],
    }
    save_checkpoint(result.model, spec.name, meta=meta, overwrite=spec.overwrite or spec.resume,
                    extra_files={OPTIMIZER_FILE: st_save(result.optimizer_state)})
    return RunOutcome(spec.name, result, metrics, saved=True)
