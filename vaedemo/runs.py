"""A whole training run as the CLI and the app start it: build or resume, train, evaluate, save."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .checkpoints import (
    LOCK_FILE,
    checkpoint_dir,
    delete_checkpoint,
    find,
    load_folder,
    read_config,
    read_tensors,
    resolve,
    save_checkpoint,
    validate_name,
)
from .data import Dataset, load_dataset
from .metrics import evaluate
from .models import build_model
from .training import Progress, StopSignal, TrainConfig, TrainResult, dist_info, train
from .zerogpu import on_zerogpu, train_in_chunks

log = logging.getLogger(__name__)

OPTIMIZER_FILE = "optimizer.safetensors"
APP_COMMAND = "vaedemo app"  # RunSpec.command of a run a visitor started in the app: a "visitor run"
PARTIAL_DIR = ".partial"  # under the checkpoints folder: one resumable partial run per name, saved every epoch


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
    d_norm: str | None = None  # a GAN's discriminator normalisation: spectral, batch or none (None: the default)
    g_hidden: int | None = None  # a GAN: a fully connected layer of this width opening the generator (0: none)
    d_hidden: int | None = None  # and one closing the discriminator
    d_augment: str | None = None  # a GAN: DiffAugment on what the discriminator sees ("none", "translation", ...)
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


_WHAT = {"ae": "plain autoencoder", "gan": "GAN"}


def model_overrides(spec: RunSpec) -> dict:
    """The model settings a run asks for (None: the default); ValueError for one the model does not have."""
    out = {"latent_dim": spec.latent_dim, "hidden_dim": spec.hidden_dim}
    if spec.channels is not None:
        if spec.model not in ("ae", "conv-vae"):
            raise ValueError("Only the convolutional models (ae, conv-vae) have channel widths to set.")
        out["channels"] = tuple(spec.channels)
    for name in ("d_norm", "d_augment"):
        if getattr(spec, name) is not None:
            if spec.model != "gan":
                raise ValueError("Only a GAN has a discriminator whose normalisation or augmentation can be chosen.")
            out[name] = getattr(spec, name)
    for name in ("g_hidden", "d_hidden"):
        if getattr(spec, name) is not None:
            if spec.model != "gan":
                raise ValueError("Only a GAN has a generator and a discriminator whose hidden layers can be sized.")
            out[name] = getattr(spec, name)
    if spec.model not in ("ae", "gan"):
        out["beta"] = spec.beta
        out["prior_components"] = spec.prior_components
    elif spec.prior_components:
        raise ValueError(f"A {_WHAT[spec.model]} has no prior to learn; pick a VAE.")
    elif spec.beta not in (None, 0):
        raise ValueError(f"A {_WHAT[spec.model]} has no KL term, so beta does not apply; pick a VAE.")
    return {k: v for k, v in out.items() if v is not None}


# ---------------------------------------------------------------------------------- partial runs


@dataclass
class PartialRun:
    """A run that was saved at an epoch's end and not finished (the process was killed, say)."""

    name: str
    kind: str
    epochs_done: int
    planned: int  # the epochs the run was started for
    command: str


def partial_root() -> Path:
    return checkpoint_dir() / PARTIAL_DIR


def _spec_meta(spec: RunSpec) -> dict:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "train"}
    return {**fields, "channels": list(spec.channels) if spec.channels else None}


def save_partial(spec: RunSpec, model, optimizer_state: dict, history: list, epochs_done: int, planned: int) -> None:
    """Save the run as it is after an epoch (weights, Adam, history), atomically, so a crash loses one epoch."""
    from safetensors.torch import save as st_save

    meta = {
        "partial": True,
        "command": spec.command,
        "run": _spec_meta(spec),
        "planned_epochs": planned,
        "training": {**dataclasses.asdict(spec.train), "epochs_done": epochs_done},
        "history": [dataclasses.asdict(h) if dataclasses.is_dataclass(h) else h for h in history],
    }
    root = partial_root()
    save_checkpoint(
        model, spec.name, meta=meta, overwrite=True, root=root, extra_files={OPTIMIZER_FILE: st_save(optimizer_state)}
    )


def partial_runs() -> list[PartialRun]:
    """The runs that can be continued, by name."""
    root = partial_root()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            config = read_config(folder)
            found.append(
                PartialRun(
                    folder.name,
                    config["model"]["kind"],
                    int(config["training"]["epochs_done"]),
                    int(config["planned_epochs"]),
                    str(config.get("command") or ""),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a damaged partial run is not offered
    return found


def discard_partial(name: str) -> None:
    """Forget the partial run ``name`` (after the run finished and saved, or when a visitor declines it);
    the partial-runs folder goes too once nothing is left in it."""
    root = partial_root()
    try:
        delete_checkpoint(name, root=root)
    except ValueError:
        pass  # there was none
    try:
        if root.is_dir() and {p.name for p in root.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(root, ignore_errors=True)
    except OSError:
        pass


def partial_spec(name: str) -> RunSpec | None:
    """The RunSpec that continues partial run ``name`` for the epochs it had left (its own settings,
    ``resume`` set), or None when there is none."""
    folder = partial_root() / validate_name(name)
    if not folder.is_dir():
        return None
    config = read_config(folder)
    spec = RunSpec(name=name, resume=True)
    names = {f.name for f in dataclasses.fields(RunSpec)} - {"name", "resume", "overwrite", "train"}
    for key, value in (config.get("run") or {}).items():
        if key in names:
            setattr(spec, key, tuple(value) if key == "channels" and value else value)
    done = int(config["training"]["epochs_done"])
    left = max(1, int(config.get("planned_epochs", done + 1)) - done)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    spec.train = dataclasses.replace(
        TrainConfig(**{k: v for k, v in config["training"].items() if k in known}), epochs=left
    ).validate()
    return spec


def _resume_partial(spec: RunSpec) -> tuple | None:
    """(model, start_epoch, Adam state, history) of partial run ``spec.name``, with ``spec`` set back to the
    run's own settings and the epochs left; None when there is none."""
    saved = partial_spec(spec.name)
    if saved is None:
        return None
    for f in dataclasses.fields(spec):
        if f.name not in ("name", "resume", "overwrite"):
            setattr(spec, f.name, getattr(saved, f.name))
    folder = partial_root() / spec.name
    model, config = load_folder(folder)
    opt_path = folder / OPTIMIZER_FILE
    done = int(config["training"]["epochs_done"])
    return model, done, read_tensors(opt_path) if opt_path.exists() else None, config.get("history") or []


def run(
    spec: RunSpec,
    *,
    data: Dataset | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: StopSignal = None,
) -> RunOutcome:
    """Train as ``spec`` says and save checkpoint ``spec.name`` (unless stopped before an epoch ended)."""
    validate_name(spec.name)
    spec.train.validate()
    start_epoch, resume_state, previous = 0, None, []
    partial = _resume_partial(spec) if spec.resume else None
    if partial is not None:  # a run cut off mid-way: continue it for the epochs it had left
        model, start_epoch, resume_state, previous = partial
    elif spec.resume:
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

    planned = start_epoch + spec.train.epochs
    done_before = list(previous)
    epochs_seen: list = []

    def saving_progress(p: Progress) -> None:
        """Every epoch's end: save the run so far as a partial run (rank 0 only), then report."""
        state_fn = getattr(p, "optimizer_state", None)
        if p.stats is not None and state_fn is not None and dist_info()[0] == 0:
            epochs_seen.append(p.stats)
            try:
                save_partial(spec, p.model, state_fn(), done_before + epochs_seen, p.epoch, planned)
            except (OSError, ValueError) as e:  # a read-only folder: the run goes on, unsaved until its end
                log.warning("could not save the partial run %s: %s", spec.name, e)
        if progress:
            progress(p)

    if on_zerogpu() and not spec.resume:  # a GPU is lent per call there: train in chunks that fit one
        result = train_in_chunks(model, data, spec.train, progress=progress, stop=stop)
    else:
        result = train(
            model,
            data,
            spec.train,
            progress=saving_progress,
            stop=stop,
            resume_state=resume_state,
            start_epoch=start_epoch,
        )
    if not result.history:  # stopped before the first epoch finished: nothing worth keeping
        return RunOutcome(spec.name, result, {}, saved=False)
    if dist_info()[0] != 0:  # under torchrun only rank 0 evaluates and writes
        return RunOutcome(spec.name, result, {}, saved=False)
    reader = None
    if getattr(model, "implicit", False):  # a GAN's inversion is scored by the digit classifier, when there is one
        from .classifier import classifier_available, load_classifier

        reader = load_classifier() if classifier_available() else None
    metrics = evaluate(result.model, data.x_val, data.y_val, iwae_k=spec.iwae_k if model.variational else 0,
                       classifier=reader)
    from safetensors.torch import save as st_save

    meta = {
        "vaedemo_version": __version__,
        "command": spec.command,
        "training": {
            **dataclasses.asdict(spec.train),
            "epochs_done": result.epochs_done,
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "optimizer": result.optimizer_meta,
        },
        "data": data.describe(),
        "class_names": data.class_names,
        "metrics": {"validation": metrics},
        "history": previous + [dataclasses.asdict(h) for h in result.history],
    }
    save_checkpoint(
        result.model,
        spec.name,
        meta=meta,
        overwrite=spec.overwrite or spec.resume,
        extra_files={OPTIMIZER_FILE: st_save(result.optimizer_state)},
    )
    discard_partial(spec.name)  # saved whole: nothing left to continue
    return RunOutcome(spec.name, result, metrics, saved=True)
