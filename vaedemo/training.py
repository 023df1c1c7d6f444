"""Training: one function that takes what it uses and returns a history.

The data lives as float tensors on the device and batches are taken by indexing, so the hot
loop has no per-item PIL or ToTensor work. Adam is the fused kernel wherever the device has one,
and the networks run in bf16 where the device computes it natively and it is faster (``precision="auto"``),
with the losses, the prior's density and Adam's state in float32. Stopping is cooperative;
resuming restores Adam.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data import Dataset, to_unit_float
from .device import pick_device
from .distributions import bernoulli_nll
from .models import LatentModel, prior_mmd


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True, so ranks never part ways (a hang under DDP)."""
    if dist_info()[1] == 1:
        return flag
    return bool(_all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if dist_info()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    kl_warmup_epochs: float = 0.0  # ramp the KL weight linearly from 0 to beta (Bowman et al. 2016)
    shift: int = 0  # random translations of up to ±shift pixels, as augmentation
    binarize: bool = False  # train on stochastically binarized pixels (Salakhutdinov & Murray 2008)
    schedule: str = "constant"  # "constant" or "cosine" learning rate
    schedule_epochs: int = 0  # epochs the cosine spans, counted from epoch 1 (0: this call's epochs); for chunked runs
    weight_decay: float = 0.0
    mmd: float = 0.0  # weight of prior_mmd(z) added to the loss, to fill the prior's holes (InfoVAE); warms with the KL
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept instead (0: off)
    patience: int = 0  # early stopping: stop after this many epochs without a better validation loss (0: off)
    max_seconds: float = 0.0  # wall-clock cap for the run (0: none)
    device: str | None = None
    amp: bool = False  # legacy alias: True asks for precision "bf16" (old config.json files carry it)
    precision: str = "auto"  # "auto" (bf16 where the device computes it natively, else fp32), "fp32" or "bf16"

    def validate(self) -> TrainConfig:
        checks = [
            ("epochs", self.epochs, 1, 100_000),
            ("batch_size", self.batch_size, 1, 65_536),
            ("shift", self.shift, 0, 8),
            ("patience", self.patience, 0, 100_000),
        ]
        for name, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number from {lo} to {hi}, not {value!r}.")
        for name, value, lo, hi in [("lr", self.lr, 1e-7, 10.0), ("kl_warmup_epochs", self.kl_warmup_epochs, 0, 1e5),
                                    ("weight_decay", self.weight_decay, 0, 1.0), ("mmd", self.mmd, 0, 1e6),
                                    ("ema", self.ema, 0, 0.99999),
                                    ("max_seconds", self.max_seconds, 0, 1e7)]:
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                raise ValueError(f"{name.replace('_', ' ')} must be a number from {lo:g} to {hi:g}, not {value!r}.")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError("schedule must be 'constant' or 'cosine'.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        return self

    @property
    def requested_precision(self) -> str:
        """``precision``, with the legacy ``amp=True`` read as "bf16" when precision is left at "auto"."""
        return "bf16" if self.amp and self.precision == "auto" else self.precision


@dataclass
class EpochStats:
    epoch: int  # 1-based, counted over resumes
    train_loss: float
    train_recon: float
    train_kl: float
    val_loss: float
    val_recon: float
    val_kl: float
    samples_per_s: float
    seconds: float
    beta: float
    lr: float
    precision: str = "fp32"  # the precision the networks trained in: "fp32" or "bf16" (resolved, never "auto")
    # A GAN's game, means over the epoch's steps (None for the other models):
    g_loss: float | None = None  # the generator's non-saturating loss, -log D(G(z))
    d_loss: float | None = None  # the discriminator's loss, -log D(x) - log(1 - D(G(z)))
    d_real: float | None = None  # mean D(x): the probability D gives real training digits
    d_fake: float | None = None  # mean D(G(z)): the probability D gives generated digits


@dataclass
class Progress:
    """What the progress callback receives: after every ``report_every`` batches and every epoch.

    ``train_loss`` and ``global_step`` let a caller plot the training loss every few steps
    (validation comes only at epoch ends, in ``stats``): ``train_loss`` is the per-image training
    loss in nats (recon + β·KL with this epoch's β, the quantity ``EpochStats.train_loss``
    averages; the MMD penalty is not in it), smoothed over steps by a bias-corrected exponential
    moving average with decay ``LOSS_SMOOTHING`` (so it is the plain loss after the first step and
    spans about the last 10 steps after that). It carries across epoch ends and starts afresh in
    each ``train`` call; None only before the first step. ``global_step`` counts optimizer steps
    over resumes: ``(epoch - 1) * steps + step``.
    """

    epoch: int
    epochs: int
    step: int  # batches done in this epoch
    steps: int  # batches per epoch
    samples_per_s: float
    eta_s: float
    stats: EpochStats | None = None  # set at the end of an epoch
    model: LatentModel | None = None  # the model being trained (at epoch ends), for previews
    train_loss: float | None = None  # smoothed per-image training loss at global_step (see above)
    global_step: int = 0  # optimizer steps done, counted over resumes
    # at epoch ends: returns Adam's state as tensors (copied only when called), so a caller can save a
    # resumable partial run; None within an epoch
    optimizer_state: Callable[[], dict[str, torch.Tensor]] | None = None
    # a GAN's smoothed losses at the same reports, {"generator": g, "discriminator": d} (smoothed as
    # train_loss is, which equals the generator's); None for the other models
    losses: dict[str, float] | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, ((self.epoch - 1) + self.step / max(1, self.steps)) / max(1, self.epochs))


@dataclass
class TrainResult:
    model: LatentModel
    history: list[EpochStats] = field(default_factory=list)
    stopped: str = ""  # "", "stop" (asked), "time" (max_seconds), "early" (patience)
    best_epoch: int = 0
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_meta: dict = field(default_factory=dict)
    epochs_done: int = 0
    precision: str = "fp32"  # what the networks trained in ("fp32" or "bf16"), as resolve_precision chose


StopSignal = Callable[[], bool] | Any  # a callable, or anything with is_set() (threading.Event)

PRECISIONS = ("auto", "fp32", "bf16")
LOSS_SMOOTHING = 0.9  # decay of Progress.train_loss's moving average over steps


def should_stop(stop: StopSignal) -> bool:
    """Whether ``stop`` asks to stop now: False for None, ``stop.is_set()`` for an Event-like
    object, else ``bool(stop())``."""
    if stop is None:
        return False
    if hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_has_native_bf16() -> bool:
    """x86 CPUs with AVX512-BF16 or AMX-BF16 instructions, which oneDNN uses for bf16 matrix products.

    Elsewhere bf16 on the CPU is converted to and from float32 around float32 arithmetic
    (AVX-512 without BF16, AVX2, and ARM CPUs here, where it was never measured) and is slower.
    """
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    try:
        if probe is not None and probe():
            return True
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        if amx is not None and amx():
            return True
    except RuntimeError:
        pass
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matrix products natively: a CPU with AVX512-BF16 or AMX, or a
    CUDA GPU of compute capability 8.0 or later (Ampere on). Never true for MPS or other devices."""
    device = torch.device(device)
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def _convolutional(model: torch.nn.Module | None) -> bool:
    return model is not None and any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


def resolve_precision(precision: str, device: torch.device | str, model: torch.nn.Module | None = None) -> str:
    """"fp32" or "bf16", what training ``model`` on ``device`` runs its networks in for the ``precision`` asked.

    "auto" picks "bf16" where the device computes it natively (``native_bf16``) and "fp32" elsewhere, and on a
    CPU only for a model without convolutions: there bf16 slowed the convolutional ones (BENCHMARKS.md, on a
    CPU with AVX512-BF16: ae 1.37x the reference loop in bf16 against 1.41x in fp32, conv-vae 1.13x against
    1.41x; the casts and batch norm cost more than the small convolutions save). "bf16" where it would be
    emulated is refused with a ValueError, as is an unknown value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    native = native_bf16(device)
    if precision == "auto":
        slower = torch.device(device).type == "cpu" and _convolutional(model)
        return "bf16" if native and not slower else "fp32"
    if precision == "bf16" and not native:
        why = {"cpu": "this CPU has no native bf16 instructions (AVX512-BF16 or AMX)",
               "cuda": "this GPU has no native bf16 (that needs compute capability 8.0 or later)"}
        kind = torch.device(device).type
        reason = why.get(kind, f"{kind} training here has no native bf16")
        raise ValueError(f"bf16 precision was asked for, but {reason}, so it would be emulated and slower; "
                         "use precision fp32 or auto.")
    return precision


@functools.cache
def _fused_adam_works(device: str, dtype: torch.dtype) -> bool:
    """One fused Adam step on a one-element tensor: torch only finds out at the first step
    whether a device has the kernel, so ask it once per device and dtype."""
    try:
        param = torch.nn.Parameter(torch.zeros(1, device=device, dtype=dtype))
        param.grad = torch.ones_like(param)
        torch.optim.Adam([param], lr=1e-3, fused=True).step()
        return bool(torch.isfinite(param).all())
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False


def make_adam(params, lr: float, weight_decay: float = 0.0,
              betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with its fused kernel (one kernel per parameter for the whole update) where every
    parameter's device and dtype have one, else the default implementation. The state (moments and
    step) is float32 either way, as the parameters are."""
    params = list(params)
    fused = bool(params) and all(_fused_adam_works(str(p.device), p.dtype) for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused or None)


def _float32_out(fn: Callable, device_type: str, dtype: torch.dtype) -> Callable:
    def low_precision(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(t.float() if torch.is_tensor(t) else t for t in out)
        return out.float()

    return low_precision


@contextmanager
def networks_in(model: LatentModel, dtype: torch.dtype | None, device_type: str):
    """Within the block, ``model.encode`` and ``model.decode_logits`` run under autocast to ``dtype``
    and hand back float32 tensors, so the reparameterisation, the losses and the prior's density
    in ``model.forward`` stay float32 while the layers' products run in ``dtype``. None: no change."""
    if dtype is None:
        yield model
        return
    model.encode = _float32_out(type(model).encode.__get__(model), device_type, dtype)
    model.decode_logits = _float32_out(type(model).decode_logits.__get__(model), device_type, dtype)
    try:
        yield model
    finally:
        del model.encode, model.decode_logits


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own integer offset in [-max_shift, max_shift], zero-filled. (N,1,H,W)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator, device="cpu").to(x.device)
    padded = F.pad(x, (max_shift,) * 4)  # (N, 1, H+2s, W+2s)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols].unsqueeze(1)


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020): the same random, differentiable transformations for every image the
    discriminator sees, real or generated, so it cannot memorise a small training set and the generator
    still learns untransformed digits. ``policy``: "none", "translation" (each image moved by up to 1/8 of
    its side, zero-filled) or "translation,cutout" (and a square of half its side zeroed at a random place,
    possibly over the edge). Draws from torch's global generator. (N, 1, H, W) in [0, 1] → the same shape."""
    if policy == "none":
        return x
    n, _, h, w = x.shape
    x = random_shift(x, int(h * 0.125 + 0.5))
    if "cutout" in policy:
        side = int(h * 0.5 + 0.5)
        centre = torch.randint(0, h + (1 - side % 2), (2, n, 1), device="cpu").to(x.device)
        rows = torch.arange(h, device=x.device) - centre[0] + side // 2  # (N, H): inside the square in [0, side)
        cols = torch.arange(w, device=x.device) - centre[1] + side // 2
        keep = ~(((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :])
        x = x * keep[:, None].to(x.dtype)
    return x


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam's state as flat tensors for safetensors, plus the JSON-able rest (no pickle)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{idx}.{key}"] = t.detach().to("cpu").contiguous()
    meta = {"param_groups": [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]}
    return tensors, meta


def _optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


@torch.no_grad()
def validation_loss(model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, beta: float,
                    batch_size: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean (loss, recon, kl) per image with one z sample per image, seeded so epochs compare."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    devices = [x.device.type] if x.device.type in ("cuda",) else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            yb = y[i : i + batch_size] if y is not None else None
            out = model(xb, yb, beta=beta, sample=True)
            totals += torch.tensor([v.item() for v in out.loss]) * len(xb)
    model.train(was_training)
    return tuple((totals / max(1, len(x))).tolist())


def train(
    model: LatentModel,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    stop: StopSignal = None,
    resume_state: dict[str, torch.Tensor] | None = None,
    start_epoch: int = 0,
    report_every: int = 10,
    keep_best: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data`` and return its history; the best-validation weights are kept
    (the last ones with ``keep_best=False``, and always for a GAN: see ``_train_gan``).

    ``start_epoch`` and ``resume_state`` (Adam's tensors from a checkpoint) continue a run;
    ``config.epochs`` counts the epochs to run now. ``stop`` is polled every batch.
    """
    config = (config or TrainConfig()).validate()
    if getattr(model, "implicit", False):  # a GAN: the adversarial recipe below, with the same contract
        return _train_gan(model, data, config, progress=progress, stop=stop, resume_state=resume_state,
                          start_epoch=start_epoch, report_every=report_every)
    if config.mmd and getattr(model, "prior", None) is not None:
        raise ValueError("The MMD penalty pulls the codes toward N(0, I); a model with a learnt prior does not use it.")
    device = pick_device(config.device)
    rank, world = dist_info()
    torch.manual_seed(config.seed)
    model.to(device).train()

    # Under torchrun each rank keeps only its shard (equal sizes, so every rank runs the same
    # number of steps) and takes batch_size / world items per step; DDP averages the gradients,
    # so one step sees batch_size items in all, as in a single process.
    n_shard = len(data.x_train) // world
    shard = slice(rank, n_shard * world, world)
    batch_size = max(1, config.batch_size // world)
    x_train = to_unit_float(data.x_train[shard]).to(device)  # (N, 1, 28, 28), stays on the device
    x_val = to_unit_float(data.x_val).to(device)
    y_train = torch.as_tensor(data.y_train[shard], dtype=torch.long, device=device) if model.conditional else None
    y_val = torch.as_tensor(data.y_val, dtype=torch.long, device=device) if model.conditional else None
    if len(x_train) == 0:
        raise ValueError("The training set is empty.")
    step_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    precision = resolve_precision(config.requested_precision, device, model)
    low = torch.bfloat16 if precision == "bf16" else None

    opt = make_adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if resume_state:
        _optimizer_from_tensors(opt, resume_state)
        for group in opt.param_groups:
            group["lr"] = config.lr
    # Polyak-style averaging: the average of the last ~1/(1-ema) steps' weights generalises better
    # than the last weights; it is what validation sees and what is kept.
    averaged = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
    kept = averaged.module if averaged is not None else model
    steps = math.ceil(len(x_train) / batch_size)
    total_steps = steps * config.epochs
    result = TrainResult(model=model, epochs_done=start_epoch, precision=precision)
    best = (math.inf, None)
    started = time.perf_counter()
    samples_seen = 0
    smoothed, smoothed_steps = 0.0, 0  # Progress.train_loss's moving average (before bias correction)

    def smooth(losses: list[torch.Tensor]) -> float | None:
        """Fold the steps' losses since the last report into the moving average: one sync per report."""
        nonlocal smoothed, smoothed_steps
        for value in torch.stack(losses)[:, 0].tolist() if losses else []:
            smoothed = LOSS_SMOOTHING * smoothed + (1 - LOSS_SMOOTHING) * value
            smoothed_steps += 1
        return smoothed / (1 - LOSS_SMOOTHING**smoothed_steps) if smoothed_steps else None

    for local_epoch in range(config.epochs):
        epoch = start_epoch + local_epoch + 1
        # One seed per epoch: a resumed run draws the same batches as an uninterrupted one.
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)
        warm = config.kl_warmup_epochs
        ramp = min(1.0, (epoch - 1) / warm) if warm > 0 else 1.0
        beta = model.beta * ramp
        # The MMD weight ramps up with the KL weight: at full strength from the first step it pulls
        # every code onto the prior before the decoder has learnt to use them (posterior collapse).
        mmd = config.mmd * ramp
        if config.schedule == "cosine":
            position = (epoch - 1) / config.schedule_epochs if config.schedule_epochs else local_epoch / config.epochs
            lr = 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, position)))
            for group in opt.param_groups:
                group["lr"] = lr
        lr = opt.param_groups[0]["lr"]
        epoch_start = time.perf_counter()
        count = 0
        # Each step's (total, recon, kl) stays on the device until a report or the epoch's end
        # reads them: no host sync per step.
        losses, sizes, reported = [], [], 0
        for step, idx in enumerate(_batches(len(x_train), batch_size, gen), start=1):
            if _agree(should_stop(stop), device):
                result.stopped = "stop"
                break
            idx = idx.to(device)
            xb = random_shift(x_train[idx], config.shift, gen)
            if config.binarize:
                xb = torch.bernoulli(xb)
            yb = y_train[idx] if y_train is not None else None
            with networks_in(model, low, device.type):
                out = step_model(xb, yb, beta=beta)
            loss = out.loss.total
            if mmd:
                loss = loss + mmd * prior_mmd(out.z.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            losses.append(torch.stack(out.loss).detach())
            sizes.append(len(idx))
            count += len(idx)
            if progress and step % report_every == 0:
                done = (local_epoch * steps + step)
                rate = (samples_seen + count * world) / max(1e-9, time.perf_counter() - started)
                train_loss = smooth(losses[reported:])
                reported = len(losses)
                progress(Progress(epoch, start_epoch + config.epochs, step, steps, rate,
                                  (total_steps - done) * config.batch_size / max(rate, 1e-9),
                                  train_loss=train_loss, global_step=(epoch - 1) * steps + step))
        if result.stopped:
            break
        seconds = time.perf_counter() - epoch_start
        train_loss_now = smooth(losses[reported:])
        sums = (torch.stack(losses) * torch.tensor(sizes, device=device, dtype=torch.float32)[:, None]).sum(0)
        totals = _all_reduce_sum(torch.cat([sums, torch.tensor([float(count)], device=device)]))
        sums, count = totals[:3], int(totals[3].item())
        samples_seen += count
        train_loss, train_recon, train_kl = (sums / max(1, count)).tolist()
        val = validation_loss(kept, x_val, y_val, model.beta, seed=config.seed) if len(x_val) else (math.nan,) * 3
        stats = EpochStats(epoch, train_loss, train_recon, train_kl, *val, count / max(seconds, 1e-9), seconds,
                           beta, lr, precision)
        result.history.append(stats)
        result.epochs_done = epoch
        if not math.isfinite(train_loss):
            raise ValueError("Training diverged (the loss became NaN or infinite); try a smaller learning rate.")
        score = val[0] if len(x_val) else train_loss
        if score < best[0] or best[1] is None:
            best = (score, {k: v.detach().clone() for k, v in kept.state_dict().items()})
            result.best_epoch = epoch
        if progress:
            rate = samples_seen / max(1e-9, time.perf_counter() - started)
            remaining = (config.epochs - local_epoch - 1) * len(x_train) / max(rate, 1e-9)
            progress(Progress(epoch, start_epoch + config.epochs, steps, steps, rate, remaining, stats, kept,
                              train_loss=train_loss_now, global_step=epoch * steps,
                              optimizer_state=lambda: _optimizer_to_tensors(opt)[0]))
        if config.patience and epoch - result.best_epoch >= config.patience:
            result.stopped = "early"
            break
        if _agree(bool(config.max_seconds) and time.perf_counter() - started > config.max_seconds, device):
            result.stopped = "time"
            break

    if keep_best and best[1] is not None:
        model.load_state_dict(best[1])
    elif averaged is not None:
        model.load_state_dict(kept.state_dict())
    model.eval()
    result.optimizer_state, result.optimizer_meta = _optimizer_to_tensors(opt)
    return result



# ---------------------------------------------------------------------------------- the GAN recipe


GAN_OPTIMIZERS = ("generator", "discriminator", "inverter")
STANDING_BATCHES = 8  # batches of STANDING_BATCH codes that re-estimate the averaged generator's batch-norm statistics
STANDING_BATCH = 250
GAN_VAL_SAMPLES = 1000  # fixed codes the generator is validated on at every epoch's end


class _Smoothed:
    """Bias-corrected exponential moving averages of a few losses over steps (decay LOSS_SMOOTHING)."""

    def __init__(self, width: int):
        self.value, self.steps = torch.zeros(width, dtype=torch.float64), 0

    def add(self, rows: list[torch.Tensor]) -> list[float] | None:
        for row in torch.stack(rows).double().cpu() if rows else []:
            self.value = LOSS_SMOOTHING * self.value + (1 - LOSS_SMOOTHING) * row
            self.steps += 1
        return (self.value / (1 - LOSS_SMOOTHING**self.steps)).tolist() if self.steps else None


@torch.no_grad()
def standing_statistics(generator: torch.nn.Module, latent_dim: int, device: torch.device, seed: int = 0) -> None:
    """Re-estimate a generator's batch-norm statistics from its own activations on fixed prior draws.

    The averaged generator's weights are a mean over many steps; the running statistics the live
    generator gathered belong to none of them, so they are measured afresh for the averaged weights
    ("standing statistics", Brock et al. 2019, BigGAN appendix C.1). It is left in eval mode.
    """
    norms = [m for m in generator.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    generator.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(STANDING_BATCHES):
        generator(torch.randn(STANDING_BATCH, latent_dim, generator=gen).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.eval()


def _gan_state(opts: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """The three optimizers' states as one flat dict of tensors, each key prefixed with its network."""
    return {f"{name}.{key}": t for name, opt in opts.items() for key, t in _optimizer_to_tensors(opt)[0].items()}


def _train_gan(model: LatentModel, data: Dataset, config: TrainConfig, *, progress, stop, resume_state,
               start_epoch: int, report_every: int) -> TrainResult:
    """The GAN recipe: DCGAN networks (Radford et al. 2016), the non-saturating loss of Goodfellow et
    al. (2014, sec. 3) and a spectrally normalised discriminator (Miyato et al. 2018), Adam for both
    players with beta1 = ``model.config.beta1``, and a moving average of the generator's weights
    (decay ``model.config.ema``, warmed up over the first steps) that samples and decodes.

    Each step trains D on a real batch against G(z), then G to make D(G(z)) read as real, then the
    inverter: on the averaged generator's own samples (z -> G(z) -> inverter -> z, mean squared error)
    and on the real batch (the reconstruction error of G(inverter(x)) through the frozen generator,
    the objective ``encode`` refines). The last epoch's weights are kept (``keep_best`` does not apply:
    no validation score ranks a GAN's epochs reliably) and ``patience`` is not used. History:
    ``train_loss`` = ``g_loss``; ``val_loss`` = the generator's loss on fixed codes through the
    averaged generator, scored by the discriminator; ``train_recon`` / ``val_recon`` = the inverter's
    unrefined reconstruction error (nats per image) on training / validation digits; KL terms 0.
    """
    if config.mmd:
        raise ValueError("The MMD penalty pulls a VAE's codes toward its prior; a GAN has no codes to pull.")
    if config.ema:
        raise ValueError("A GAN keeps its own moving average of the generator (its model setting ema); "
                         "leave the training ema at 0.")
    rank, world = dist_info()
    if world > 1:
        raise ValueError("A GAN trains in one process; run it without torchrun.")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device).train()
    cfg = model.config
    G, D, E, G_ema = model.generator, model.discriminator, model.inverter, model.generator_ema
    augment = getattr(cfg, "d_augment", "none")
    x_train = to_unit_float(data.x_train).to(device)  # (N, 1, 28, 28)
    x_val = to_unit_float(data.x_val).to(device)
    if len(x_train) == 0:
        raise ValueError("The training set is empty.")
    precision = resolve_precision(config.requested_precision, device, model)
    low = torch.bfloat16 if precision == "bf16" else None

    def autocast():
        return torch.autocast(device.type, dtype=low or torch.bfloat16, enabled=low is not None)

    betas = (cfg.beta1, 0.999)
    opts = {name: make_adam(net.parameters(), config.lr, config.weight_decay, betas)
            for name, net in zip(GAN_OPTIMIZERS, (G, D, E))}
    if resume_state:
        for name, opt in opts.items():
            prefix = f"{name}."
            _optimizer_from_tensors(opt, {k[len(prefix):]: v for k, v in resume_state.items() if k.startswith(prefix)})
            for group in opt.param_groups:
                group["lr"] = config.lr
    batch_size = config.batch_size
    steps = math.ceil(len(x_train) / batch_size)
    total_steps = steps * config.epochs
    d = cfg.latent_dim
    z_val = torch.randn(GAN_VAL_SAMPLES, d, generator=torch.Generator().manual_seed(config.seed)).to(device)
    result = TrainResult(model=model, epochs_done=start_epoch, precision=precision)
    smoothed = _Smoothed(2)
    started = time.perf_counter()
    samples_seen = 0

    for local_epoch in range(config.epochs):
        epoch = start_epoch + local_epoch + 1
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)
        if config.schedule == "cosine":
            position = (epoch - 1) / config.schedule_epochs if config.schedule_epochs else local_epoch / config.epochs
            for opt in opts.values():
                for group in opt.param_groups:
                    group["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, position)))
        lr = opts["generator"].param_groups[0]["lr"]
        epoch_start = time.perf_counter()
        count = 0
        # per step: (g_loss, d_loss, D(x), D(G(z)), inverter's recon nats per image), on the device until read
        rows, sizes, reported = [], [], 0
        for step, idx in enumerate(_batches(len(x_train), batch_size, gen), start=1):
            if should_stop(stop):
                result.stopped = "stop"
                break
            xb = random_shift(x_train[idx.to(device)], config.shift, gen)
            if config.binarize:
                xb = torch.bernoulli(xb)
            n = len(xb)
            # The discriminator: real digits against this step's samples, in separate batches (as DCGAN's
            # batch norm needs: a batch mixing both would let D read the mix rather than each image).
            with autocast():
                fake = torch.sigmoid(G(torch.randn(n, d, device=device)))  # (n, 1, 28, 28)
                logits = torch.cat([D(diff_augment(xb, augment)),
                                    D(diff_augment(fake.detach(), augment))]).float()  # (2n,)
            d_loss = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()
            opts["discriminator"].zero_grad(set_to_none=True)
            d_loss.backward()
            opts["discriminator"].step()
            # The generator, non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
            D.requires_grad_(False)
            with autocast():
                g_loss = F.softplus(-D(diff_augment(fake, augment)).float()).mean()
            opts["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            opts["generator"].step()
            D.requires_grad_(True)
            global_step = (epoch - 1) * steps + step
            decay = min(cfg.ema, (1 + global_step) / (10 + global_step))  # short runs average fewer steps
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.lerp_(p, 1 - decay)
            # The inverter, against the averaged generator (frozen, eval mode): its own samples' codes, and real digits.
            z_own = torch.randn(n, d, device=device)
            with autocast():
                with torch.no_grad():
                    own = torch.sigmoid(G_ema(z_own))
                z_loss = (E(own).float() - z_own).pow(2).sum(1).mean()
                z_real = E(xb).float()
                recon = bernoulli_nll(G_ema(z_real).float(), xb)  # (n,) nats
            # the objective encode() refines, -log p(x|z) + |z|^2 / 2, per pixel so it weighs like the z loss
            e_loss = z_loss + cfg.inverter_pixel_weight * (recon + 0.5 * z_real.pow(2).sum(1)).mean() / xb[0].numel()
            opts["inverter"].zero_grad(set_to_none=True)
            e_loss.backward()
            opts["inverter"].step()
            with torch.no_grad():
                probs = torch.sigmoid(logits.detach())
                rows.append(torch.stack([g_loss.detach(), d_loss.detach(), probs[:n].mean(), probs[n:].mean(),
                                         recon.detach().mean()]))
            sizes.append(n)
            count += n
            if progress and step % report_every == 0:
                done = local_epoch * steps + step
                rate = (samples_seen + count) / max(1e-9, time.perf_counter() - started)
                g, dl = smoothed.add([r[:2] for r in rows[reported:]])
                reported = len(rows)
                progress(Progress(epoch, start_epoch + config.epochs, step, steps, rate,
                                  (total_steps - done) * batch_size / max(rate, 1e-9), train_loss=g,
                                  global_step=global_step, losses={"generator": g, "discriminator": dl}))
        if result.stopped:
            break
        seconds = time.perf_counter() - epoch_start
        now = smoothed.add([r[:2] for r in rows[reported:]])
        weights = torch.tensor(sizes, dtype=torch.float64)[:, None]
        g_mean, d_mean, d_real, d_fake, recon_mean = ((torch.stack(rows).double().cpu() * weights).sum(0)
                                                      / max(1, count)).tolist()
        samples_seen += count
        standing_statistics(G_ema, d, device, seed=config.seed)
        val_g, val_recon = _gan_validation(model, z_val, x_val)
        stats = EpochStats(epoch, g_mean, recon_mean, 0.0, val_g, val_recon, 0.0, count / max(seconds, 1e-9),
                           seconds, 0.0, lr, precision, g_loss=g_mean, d_loss=d_mean, d_real=d_real, d_fake=d_fake)
        result.history.append(stats)
        result.epochs_done = result.best_epoch = epoch
        if not all(math.isfinite(v) for v in (g_mean, d_mean, val_g)):
            raise ValueError("Training diverged (a GAN loss became NaN or infinite); try a smaller learning rate.")
        if progress:
            rate = samples_seen / max(1e-9, time.perf_counter() - started)
            remaining = (config.epochs - local_epoch - 1) * len(x_train) / max(rate, 1e-9)
            progress(Progress(epoch, start_epoch + config.epochs, steps, steps, rate, remaining, stats, model,
                              train_loss=now[0] if now else g_mean, global_step=epoch * steps,
                              optimizer_state=lambda: _gan_state(opts),
                              losses={"generator": now[0], "discriminator": now[1]} if now else None))
        if config.max_seconds and time.perf_counter() - started > config.max_seconds:
            result.stopped = "time"
            break

    if result.stopped == "stop":  # the batches after the last epoch's end moved the averaged generator too
        standing_statistics(G_ema, d, device, seed=config.seed)
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)  # the model leaves training with no gradients held
    model.eval()
    result.optimizer_state = _gan_state(opts)
    result.optimizer_meta = {name: _optimizer_to_tensors(opt)[1] for name, opt in opts.items()}
    return result


@torch.no_grad()
def _gan_validation(model: LatentModel, z: torch.Tensor, x_val: torch.Tensor) -> tuple[float, float]:
    """(the generator's loss -log D(G(z)) on the fixed codes ``z``, the inverter's unrefined reconstruction
    error in nats per validation digit), with the averaged generator and every network in eval mode."""
    was_training = model.training
    model.eval()
    g = torch.cat([F.softplus(-model.discriminate(model.decode(zb))) for zb in z.split(500)]).mean().item()
    recon = (torch.cat([bernoulli_nll(model.decode_logits(model.inverter(xb)), xb) for xb in x_val.split(500)])
             .mean().item() if len(x_val) else 0.0)
    model.train(was_training)
    return g, recon
