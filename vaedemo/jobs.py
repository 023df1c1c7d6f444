"""Training runs for the app: one at a time per server, with live previews.

The run trains its own fresh model (never one serving requests) and streams ``TrainUpdate``s; the policy
(on/off, caps) comes from the environment, off by default on a Hugging Face Space. Where it can, a run trains
in a child process (``isolated``) and a thread of the server relays its updates; on ZeroGPU, on Windows, or
with ``VAEDEMO_TRAIN_PROCESS=off``, it trains in a thread of the server itself.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .checkpoints import delete_checkpoint, resolve, scan_checkpoints, validate_name
from .data import DATASETS, load_dataset
from .distributions import prior_draws
from .inference.codec import decode, encode
from .inference.stats import fit_code_gaussian
from .models import REGISTRY, LatentModel, validate_config
from .projections import PCAProjection
from .runs import APP_COMMAND
from .validation import choice, training_request
from .zerogpu import on_zerogpu

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- training


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    return default


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def training_policy() -> dict:
    """What this server allows, read from the environment on every call.

    ``VAEDEMO_TRAINING`` on|off (default off on a Hugging Face Space, i.e. when ``SPACE_ID`` is
    set); caps ``VAEDEMO_MAX_EPOCHS`` (50; 5 on a Space), ``VAEDEMO_MAX_TRAIN_ITEMS`` (0 = no
    cap; 5000 on a Space), ``VAEDEMO_MAX_TRAIN_SECONDS`` (0 = none; 300 on a Space), and
    ``VAEDEMO_MAX_VISITOR_RUNS``, how many runs trained in the app are kept (0 = all; 20 on a Space).
    """
    on_space = bool(os.environ.get("SPACE_ID"))
    return {
        "enabled": _env_flag("VAEDEMO_TRAINING", default=not on_space),
        "on_space": on_space,
        "max_epochs": max(1, int(_env_number("VAEDEMO_MAX_EPOCHS", 5 if on_space else 50))),
        "max_train_items": int(_env_number("VAEDEMO_MAX_TRAIN_ITEMS", 5000 if on_space else 0)),
        "max_train_seconds": float(_env_number("VAEDEMO_MAX_TRAIN_SECONDS", 300 if on_space else 0)),
        "max_visitor_runs": int(_env_number("VAEDEMO_MAX_VISITOR_RUNS", 20 if on_space else 0)),
    }


@dataclass
class TrainUpdate:
    job_id: str
    fraction: float = 0.0  # of the whole run, 0..1
    epoch: int = 0
    epochs: int = 0
    samples_per_s: float = 0.0
    eta_s: float = 0.0
    history: list[dict] = field(default_factory=list)  # one EpochStats dict per finished epoch
    steps: list[tuple[float, float]] = field(default_factory=list)  # (epoch as a fraction, smoothed train loss)
    gan_steps: list[tuple[float, float, float]] = field(default_factory=list)  # (epoch fraction, G loss, D loss)
    d_real: np.ndarray | None = None  # (n,) a GAN's discriminator: P(real) for validation digits
    d_fake: np.ndarray | None = None  # (n,) and for generated ones
    preview_recon: np.ndarray | None = None  # (8, 28, 28) reconstructions of preview_originals
    preview_originals: np.ndarray | None = None  # (8, 28, 28) fixed validation digits
    prior_samples: np.ndarray | None = None  # (8, 28, 28) decodes of 8 fixed prior draws
    map_coords: np.ndarray | None = None  # (n, 2) validation codes on the PCA basis fitted after epoch 1
    map_labels: np.ndarray | None = None  # (n,)
    message: str = ""
    done: bool = False
    error: str | None = None
    checkpoint: str | None = None  # set once the run is saved
    seq: int = 0  # increases with every update
    previews_seq: int = 0  # the seq of the update that brought the current previews (0: none yet)


PREVIEW_COUNT = 8
LIVE_MAP_SIZE = 1000
PREVIEW_EVERY_S = 1.0  # previews and the live map are redrawn at most this often (each costs an encode pass)
MAX_CURVE_POINTS = 2000  # step points kept for the curve; older ones are thinned out
GAN_GRID = 32  # samples from fixed noise shown while a GAN trains
GAN_SCORED = 500  # real and generated digits the discriminator scores for the histograms


def prune_visitor_runs(keep: int, spare: str | None = None) -> list[str]:
    """Delete the oldest runs trained in the app beyond the ``keep`` newest (never ``spare``, the one just
    saved); returns the names removed. Checkpoints made any other way (shipped, the CLI) are never touched."""
    if keep <= 0:
        return []
    runs = sorted((i for i in scan_checkpoints() if i.command == APP_COMMAND), key=lambda i: (i.created, i.name))
    removed = []
    for info in runs[: max(0, len(runs) - keep)]:
        if info.name == spare:
            continue
        try:
            delete_checkpoint(info.name)
            removed.append(info.name)
        except (OSError, ValueError) as e:
            log.warning("could not remove the old visitor run %s: %s", info.name, e)
    return removed


def build_run_spec(spec_kwargs: dict, policy: dict | None = None):
    """Check a training request from the web and turn it into a ``RunSpec``, applying the server's caps."""
    from .runs import RunSpec, model_overrides
    from .training import TrainConfig

    policy = policy or training_policy()
    text, run_kw, train_kw = training_request(spec_kwargs)
    name = validate_name(text.get("name"))
    if resolve(name).exists():
        raise ValueError(f"A checkpoint named {name!r} already exists; choose another name.")
    kind = choice(text.get("model", "vae"), "model", tuple(REGISTRY))
    dataset = choice(text.get("dataset", "mnist-10k"), "dataset", tuple(DATASETS))  # never a server path

    cap = policy["max_epochs"]
    train_kw.setdefault("epochs", min(TrainConfig.epochs, cap))
    if train_kw["epochs"] > cap:
        raise ValueError(f"This server trains for at most {cap} epochs; choose {cap} or fewer.")
    if policy["max_train_items"]:
        run_kw["max_train"] = min(run_kw.get("max_train") or policy["max_train_items"], policy["max_train_items"])
    if policy["max_train_seconds"]:
        requested = train_kw.get("max_seconds") or policy["max_train_seconds"]
        train_kw["max_seconds"] = min(requested, policy["max_train_seconds"])
    config = TrainConfig(**train_kw).validate()
    spec = RunSpec(name=name, model=kind, dataset=dataset, train=config, command=APP_COMMAND, **run_kw)
    # Check the model's settings now (cheap: no weights are built) rather than in the background thread.
    sizes = {k: v for k, v in model_overrides(spec).items() if v is not None}
    validate_config(REGISTRY[kind].config_cls(**sizes))
    return spec


# ---------------------------------------------------------------------------------- the worker process

# Why a process: a run in a thread of the server shares its GIL with the web server's threads, and libgomp
# lets every handler thread that ran torch keep an OpenMP team, so the training thread's parallel regions wake
# more threads than there are cores; a Train-tab run went at about half the CLI's rate (benchmarks/notes.md).
# A child forked from a fork server (a fresh interpreter that imported torch and this package, and never ran
# an op) has neither problem, starts in milliseconds, and a crash in it leaves the server serving.
_PRELOAD = ["vaedemo.jobs", "vaedemo.runs", "vaedemo.training"]


def isolated() -> bool:
    """Whether app runs train in a child process: where the fork server exists (not Windows), not on ZeroGPU
    (its GPU is lent to the server process per call), and unless ``VAEDEMO_TRAIN_PROCESS`` is off."""
    return (_env_flag("VAEDEMO_TRAIN_PROCESS", True) and not on_zerogpu()
            and "forkserver" in multiprocessing.get_all_start_methods())


def _context():
    ctx = multiprocessing.get_context("forkserver")
    # app.py is re-run as the child's __mp_main__; with the UI preloaded its one import costs nothing
    ctx.set_forkserver_preload(_PRELOAD + (["vaedemo.ui"] if "vaedemo.ui" in sys.modules else []))
    return ctx


def warm_worker() -> None:
    """Start the fork server now, so its imports (a few seconds) are done before the first run asks for it."""
    if isolated() and training_policy()["enabled"]:
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()


def worker_threads() -> int:
    """torch threads for a run in a worker process: the server's, less one, which the server and the visitor's
    browser keep. Each op splits its work evenly over its threads and waits for the slowest, so a thread that
    loses its core to the page stalls every op (2 threads on 2 cores with the Train tab open trained at 37% of
    the CLI's rate). ``VAEDEMO_TRAIN_THREADS`` sets the count instead (for a server with no browser beside it)."""
    asked = os.environ.get("VAEDEMO_TRAIN_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return int(asked)
    return max(1, torch.get_num_threads() - 1)


def _child_main(job: _Job, conn: Any, env: dict, threads: int) -> None:
    """The worker process: the run, with every update sent to the server, on ``threads`` torch threads. The
    environment is the server's as it is now (the fork server's dates from its start)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; its exit ends this process
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)

    def send(update: TrainUpdate) -> None:
        try:
            conn.send(update)
        except (OSError, EOFError):  # the server is gone: stop, and keep the finished epochs as a partial run
            job.stop.set()

    job.sink = send
    try:
        _execute(job)
    finally:
        conn.close()


@dataclass(eq=False)
class _Job:
    id: str
    spec: Any  # RunSpec
    stop: Any = field(default_factory=threading.Event)  # a multiprocessing Event for a run in a worker process
    cond: threading.Condition = field(default_factory=threading.Condition)
    latest: TrainUpdate | None = None
    started: float = field(default_factory=time.time)
    basis: PCAProjection | None = None  # the live map's axes, fitted after epoch 1 and then kept
    previewed: float = 0.0  # time.monotonic() of the last previews
    sink: Any = None  # in a worker process: sends each update to the server
    pid: int | None = None  # the worker process's, while it runs

    @property
    def done(self) -> bool:
        return self.latest is not None and self.latest.done

    def publish(self, **changes: Any) -> None:
        self.receive(dataclasses.replace(self.latest, seq=self.latest.seq + 1, **changes))

    def receive(self, update: TrainUpdate) -> None:
        with self.cond:
            self.latest = update
            self.cond.notify_all()
        if self.sink is not None:
            self.sink(update)

    def __getstate__(self) -> dict:  # what a worker process needs: no lock, no sink
        state = dict(self.__dict__)
        del state["cond"], state["sink"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, cond=threading.Condition(), sink=None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class TrainingManager:
    """Runs one training job at a time per process, in a background thread, on its own fresh model."""

    def __init__(self, keep_jobs: int = 8):
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._active: _Job | None = None
        self._keep = keep_jobs

    def start(self, spec_kwargs: dict) -> str:
        """Start a run and return its job id; ValueError when training is off, busy, or a setting is bad."""
        policy = training_policy()
        if not policy["enabled"]:
            raise ValueError(
                "Training is turned off on this server; train on your own machine with "
                "`python -m vaedemo train` and copy the checkpoint folder here."
            )
        return self._launch(build_run_spec(spec_kwargs, policy))

    def resume(self, name: Any) -> str:
        """Continue the partial run ``name`` (saved at an epoch's end before a crash or restart), under
        the server's caps; returns the job id."""
        from .runs import partial_runs, partial_spec

        policy = training_policy()
        if not policy["enabled"]:
            raise ValueError("Training is turned off on this server.")
        found = {p.name: p for p in partial_runs()}
        if not isinstance(name, str) or name not in found:
            raise ValueError("There is no interrupted run by that name to continue.")
        if found[name].planned - found[name].epochs_done > policy["max_epochs"]:
            raise ValueError(
                f"This server trains for at most {policy['max_epochs']} epochs at a time; the run "
                f"{name!r} has {found[name].planned - found[name].epochs_done} left."
            )
        return self._launch(partial_spec(name))

    def _launch(self, spec: Any) -> str:
        with self._lock:
            self._raise_if_busy()
            stop, apart = threading.Event(), isolated()
            if apart:
                try:
                    stop = _context().Event()  # shared with the worker
                except OSError as e:  # no shared semaphores here (a container without /dev/shm): a thread, then
                    log.warning("cannot share a stop signal with a training process (%s); training in a thread", e)
                    apart = False
            job = _Job(id=uuid.uuid4().hex[:12], spec=spec, stop=stop)
            job.latest = TrainUpdate(job.id, epochs=spec.train.epochs, message="Starting…")
            self._active = job
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest] is self._active:
                    break
                self._jobs.pop(oldest)
        work = self._relay if apart else self._work
        threading.Thread(target=work, args=(job,), name=f"vaedemo-train-{job.id}", daemon=True).start()
        return job.id

    def _raise_if_busy(self) -> None:
        job = self._active
        if job is None or job.done:
            return
        u = job.latest
        raise ValueError(
            f"Training is busy: another run is going ({100 * u.fraction:.0f}% done, "
            f"about {max(0, round(u.eta_s))} s left)."
        )

    def _job(self, job_id: Any) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise ValueError(
                "There is no training run with that id (it may have finished long ago, or the server restarted)."
            )
        return job

    def events(self, job_id: str, heartbeat_s: float = 1.0, min_interval_s: float = 0.25) -> Iterator[TrainUpdate]:
        """Yield the run's updates as they come, ending with done: the latest one when several arrive at
        once, and at most one per ``min_interval_s`` (drawing a curve costs the training thread time)."""
        job = self._job(job_id)
        seen = -1
        while True:
            with job.cond:
                job.cond.wait_for(lambda last=seen: job.latest.seq != last, timeout=heartbeat_s)
                update = job.latest
            if update.seq != seen:
                seen = update.seq
                yield update
            if update.done:
                return
            with job.cond:  # rest a moment, but wake at once for the run's end
                job.cond.wait_for(lambda: job.latest.done, timeout=min_interval_s)

    def stop(self, job_id: str) -> bool:
        """Ask a run to stop after its current batch; the best finished epoch is still saved."""
        job = self._job(job_id)
        if job.done:
            return False
        job.stop.set()
        return True

    def status(self) -> dict:
        with self._lock:
            job = self._active
        if job is None or job.done:
            return {"busy": False, "job_id": None, "name": None, "fraction": 0.0, "eta_s": 0.0, "message": ""}
        u = job.latest
        return {
            "busy": True,
            "job_id": job.id,
            "name": job.spec.name,
            "fraction": u.fraction,
            "eta_s": u.eta_s,
            "message": u.message,
        }

    def worker_pid(self, job_id: str) -> int | None:
        """The process training run ``job_id``: a worker's pid while it runs, else None (done, or in a thread)."""
        return self._job(job_id).pid

    # -- the background thread

    def _work(self, job: _Job) -> None:
        """Train in this thread."""
        try:
            _execute(job)
        finally:
            self._release(job)

    def _relay(self, job: _Job) -> None:
        """Train in a worker process and pass its updates on; if it dies, the run ends with a sentence."""
        ctx = _context()
        receiver, sender = ctx.Pipe(duplex=False)
        try:
            process = ctx.Process(target=_child_main, args=(job, sender, dict(os.environ), worker_threads()),
                                  name=f"vaedemo-train-{job.id}", daemon=True)
            process.start()
        except Exception as e:  # no fork server here after all: train in this thread instead
            log.warning("could not start a training process (%s); training in a thread", e)
            return self._work(job)  # its multiprocessing Event stops a thread just as well
        sender.close()  # the worker holds the only sending end, so its death ends recv() below
        job.pid = process.pid
        try:
            while True:
                try:
                    update = receiver.recv()
                except (EOFError, OSError):
                    break
                job.receive(update)
                if update.done:
                    break
            process.join(timeout=30)
            if not job.done:
                code = process.exitcode
                text = (f"The training process ended unexpectedly (exit code {code}); the epochs it finished are "
                        "kept as an interrupted run you can continue.")
                log.error("training run %s: %s", job.id, text)
                job.publish(done=True, error=text, message=text)
        finally:
            receiver.close()
            job.pid = None
            self._release(job)

    def _release(self, job: _Job) -> None:
        with self._lock:
            if self._active is job:
                self._active = None


def _execute(job: _Job) -> None:
    """The run itself, in whichever thread or process trains it; always ends with a done update."""
    from .runs import run

    try:
        data = load_dataset(job.spec.dataset)
        job.publish(message=f"Training on {min(len(data.x_train), job.spec.max_train or 10**12):,} digits…")
        outcome = run(job.spec, data=data, progress=lambda p: _progress(job, data, p), stop=job.stop)
        if outcome.saved:
            removed = prune_visitor_runs(training_policy()["max_visitor_runs"], spare=outcome.name)
            if removed:
                log.info("kept the newest visitor runs; removed %s", ", ".join(removed))
            result = outcome.result
            how = {
                "stop": "Stopped on request",
                "time": "Reached the time limit",
                "early": "Stopped early (no improvement)",
            }.get(result.stopped, "Finished")
            job.publish(
                done=True,
                checkpoint=outcome.name,
                fraction=1.0 if not result.stopped else job.latest.fraction,
                eta_s=0.0,
                message=f"{how} after {_plural(result.epochs_done, 'epoch')}; saved the best epoch "
                f"({result.best_epoch}) as {outcome.name!r}.",
            )
        else:
            job.publish(done=True, eta_s=0.0, message="Stopped before the first epoch finished; nothing was saved.")
    except ValueError as e:
        job.publish(done=True, error=str(e), message=str(e))
    except Exception as e:  # the run must always finish the job, whatever went wrong
        log.exception("training run %s failed", job.id)
        text = f"Training failed unexpectedly ({type(e).__name__}: {e})."
        job.publish(done=True, error=text, message=text)


def _progress(job: _Job, data: Any, p: Any) -> None:
    changes: dict[str, Any] = dict(
        fraction=p.fraction,
        epoch=p.epoch,
        epochs=p.epochs,
        samples_per_s=p.samples_per_s,
        eta_s=p.eta_s,
        message=f"Epoch {p.epoch} of {p.epochs}: batch {p.step} of {p.steps}",
    )
    train_loss = getattr(p, "train_loss", None)
    if train_loss is not None and p.steps and math.isfinite(train_loss):
        steps = job.latest.steps
        if len(steps) >= MAX_CURVE_POINTS:
            steps = steps[::2]  # keep the whole run's shape at half the resolution
        changes["steps"] = [*steps, (p.epoch - 1 + p.step / p.steps, float(train_loss))]
    losses = getattr(p, "losses", None)
    if losses and p.steps and {"generator", "discriminator"} <= set(losses):
        gan_steps = job.latest.gan_steps
        if len(gan_steps) >= MAX_CURVE_POINTS:
            gan_steps = gan_steps[::2]
        changes["gan_steps"] = [
            *gan_steps,
            (p.epoch - 1 + p.step / p.steps, float(losses["generator"]), float(losses["discriminator"])),
        ]
    last = p.stats is not None and p.epoch >= p.epochs
    if p.stats is not None:
        changes["history"] = [*job.latest.history, dataclasses.asdict(p.stats)]
        changes["message"] = f"Epoch {p.epoch} of {p.epochs} done: validation loss {p.stats.val_loss:.1f} nats"
        if last:  # evaluate (IWAE) and the save come next and take a few seconds
            changes["message"] += " · evaluating and saving…"
    # previews whenever training hands over its model (epoch ends; a GAN's reports too), at most once a second
    if p.model is not None and (last or time.monotonic() - job.previewed >= PREVIEW_EVERY_S):
        changes.update(_previews(job, p.model, data), previews_seq=job.latest.seq + 1)
        job.previewed = time.monotonic()
    if job.stop.is_set():
        changes["message"] = "Stopping…"
    job.publish(**changes)

def _previews(job: _Job, model: LatentModel, data: Any) -> dict:
    """Reconstructions, prior samples and the live map, from the model being trained (eval mode, no grad)."""
    if getattr(model, "implicit", False):
        return _gan_previews(model, data)
    was_training = model.training
    model.eval()
    try:
        x_val = data.x_val[:LIVE_MAP_SIZE].astype(np.float32) / 255.0
        y_val = data.y_val[:LIVE_MAP_SIZE]
        originals = x_val[:PREVIEW_COUNT]
        codes, _ = encode(model, x_val, y_val)
        recon = decode(model, codes[:PREVIEW_COUNT], y_val[:PREVIEW_COUNT])
        # The app's one sampler, with the fixed seed 0: the same draws as the Sample tab's first grid
        fitted = None if model.variational else fit_code_gaussian(codes)
        z = prior_draws(model, PREVIEW_COUNT, seed=0, code_gaussian=fitted).double().cpu().numpy()
        labels = np.arange(PREVIEW_COUNT) % getattr(model.config, "num_classes", 10)
        prior = decode(model, z, labels)
        if job.basis is None:
            job.basis = PCAProjection(2).fit(codes)
        coords = job.basis.transform(codes).astype(np.float32)
    finally:
        model.train(was_training)
    return {
        "preview_recon": recon,
        "preview_originals": originals,
        "prior_samples": prior,
        "map_coords": coords,
        "map_labels": np.asarray(y_val),
    }

def _gan_previews(model: LatentModel, data: Any) -> dict:
    """A GAN's view while it trains: a grid decoded from fixed noise (the same draws every time, so mode
    collapse shows as the grid losing variety) and the discriminator's scores on real and generated digits."""
    was_training = model.training
    model.eval()
    try:
        z = prior_draws(model, GAN_GRID, seed=0)  # fixed noise: N(0, I), seed 0
        with torch.no_grad():
            fake = model.decode(z)
            real = torch.from_numpy(data.x_val[:GAN_SCORED].astype(np.float32) / 255.0)[:, None]
            device = next(model.parameters()).device
            d_real = torch.sigmoid(model.discriminate(real.to(device))).float().cpu().numpy()
            more = model.decode(prior_draws(model, GAN_SCORED, seed=1))
            d_fake = torch.sigmoid(model.discriminate(more)).float().cpu().numpy()
    finally:
        model.train(was_training)
    return {"prior_samples": fake[:, 0].float().cpu().numpy(), "d_real": d_real, "d_fake": d_fake}




TRAINER = TrainingManager()
