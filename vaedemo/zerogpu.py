"""Hugging Face ZeroGPU: a GPU lent per call to functions wrapped with ``spaces.GPU``.

On such a Space (``SPACE_ID`` set and the ``spaces`` package importable) the handlers that
compute are wrapped with a duration that fits each call, and training runs in chunks of epochs
that each fit one GPU call and hand the weights back as CPU tensors. Everywhere else ``gpu()``
returns the function unchanged, so the app behaves identically without ``spaces``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

# Seconds asked of ZeroGPU per call; a call that asks for less waits less in its queue.
DURATIONS = {"reconstruct": 20, "sample": 20, "interpolate": 20, "traverse": 20, "latent_map": 120, "train_chunk": 120}
CHUNK_EPOCHS = 5  # epochs per GPU call; 5 epochs of mnist-10k take seconds on a GPU, far under 120 s


def on_zerogpu() -> bool:
    return bool(os.environ.get("SPACE_ID")) and importlib.util.find_spec("spaces") is not None


WRAPPED: list[str] = []  # names of the functions wrapped in this process, for /health and tests


def gpu(name: str) -> Callable[[Callable], Callable]:
    """Decorator: ``spaces.GPU(duration=DURATIONS[name])`` on ZeroGPU, else the function itself."""

    def wrap(fn: Callable) -> Callable:
        if not on_zerogpu():
            return fn
        import spaces  # imported only on a Space; it must come before anything touches CUDA

        WRAPPED.append(fn.__name__)
        return spaces.GPU(duration=DURATIONS[name])(fn)

    return wrap


def _train_chunk(
    kind: str, model_config: dict, state: dict, opt_state: dict | None, data: Any, train_config: Any, start_epoch: int
) -> tuple[dict, dict, list, int, int, str]:
    """One GPU call: rebuild the model, train ``train_config.epochs`` epochs, return CPU tensors."""
    from .models import model_from_config
    from .training import train

    model = model_from_config(kind, model_config)
    model.load_state_dict(state)
    # The last weights, not the chunk's best: the next chunk continues from them with Adam's state.
    result = train(model, data, train_config, resume_state=opt_state, start_epoch=start_epoch, keep_best=False)
    cpu_state = {k: v.detach().to("cpu") for k, v in result.model.state_dict().items()}
    return cpu_state, result.optimizer_state, result.history, result.epochs_done, result.best_epoch, result.stopped


def train_in_chunks(
    model: Any,
    data: Any,
    config: Any,
    *,
    progress: Callable | None = None,
    stop: Any = None,
    chunk_epochs: int = CHUNK_EPOCHS,
) -> Any:
    """Same contract as ``training.train``: each chunk is one ``spaces.GPU`` call on ZeroGPU.

    The stop signal and the wall-clock cap (``config.max_seconds``, counted from this call) are
    checked between chunks, and each chunk gets the time that is left, so it stops mid-way when the
    cap falls inside it. Progress is reported after each chunk's epochs. The best-validation
    weights across chunks are the ones kept, as in a single call.
    """
    from .training import Progress, TrainResult
    from .training import should_stop as _should_stop

    chunk = gpu("train_chunk")(_train_chunk)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}  # the given starting weights
    opt_state, history = None, []
    best = (float("inf"), None, 0)
    done, stopped = 0, ""
    config = config.validate()
    if config.ema:
        raise ValueError("Weight averaging (ema) is not available for training in chunks on ZeroGPU.")
    started = time.monotonic()
    while done < config.epochs:
        if _should_stop(stop):
            stopped = "stop"
            break
        left = config.max_seconds - (time.monotonic() - started) if config.max_seconds else 0.0
        if config.max_seconds and left <= 0:
            stopped = "time"
            break
        n = min(chunk_epochs, config.epochs - done)
        part = dataclasses.replace(
            config, epochs=n, patience=0, max_seconds=left, schedule_epochs=config.schedule_epochs or config.epochs
        )
        state, opt_state, hist, chunk_done, _, chunk_stopped = chunk(
            model.kind, dataclasses.asdict(model.config), state, opt_state, data, part, done
        )
        if not hist:  # the time ran out before the chunk's first epoch ended
            stopped = chunk_stopped or "time"
            break
        history += hist
        done = chunk_done  # counted from epoch 1, like start_epoch
        if hist[-1].val_loss < best[0]:  # best at chunk ends: the weights in hand
            best = (hist[-1].val_loss, state, hist[-1].epoch)
        if progress:
            s = hist[-1]
            progress(Progress(s.epoch, config.epochs, 1, 1, s.samples_per_s, 0.0, s, None))
        if config.patience and done - best[2] >= config.patience:
            stopped = "early"
            break
        if chunk_stopped:  # the chunk hit the time cap (or a stop) part-way
            stopped = chunk_stopped
            break
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        stopped=stopped,
        best_epoch=best[2],
        optimizer_state=opt_state or {},
        epochs_done=done,
    )
