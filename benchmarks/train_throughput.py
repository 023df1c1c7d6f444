"""Training throughput and quality parity.

- samples/s of vaedemo's engine (``training.train``, in fp32 and, where the CPU has native bf16,
  in bf16) against a pytorch/examples-style loop (DataLoader over PIL images, plain Adam, fp32),
  same model and batch size;
- the share of the matmul bound: the model's matrix-product FLOPs per step (matmuls and
  convolutions, forward and backward, as ``FlopCounterMode`` counts them) times our steps/s,
  over the GFLOP/s of a 1024³ product in the same precision, measured in the same run;
- parity: the same seed and recipe trained for 30 epochs in fp32 and in bf16 give validation −ELBOs
  within 1% of each other.

Other processes share this machine's cores, so each figure is the best of a few interleaved
rounds (the one least disturbed), taken the same way for ours and the reference.
"""

from __future__ import annotations

import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from vaedemo import distributions
from vaedemo.data import mnist10k
from vaedemo.models import build_model
from vaedemo.training import TrainConfig, native_bf16, resolve_precision, train

BATCH = 128
KINDS = ("vae", "ae", "conv-vae")
# The shipped checkpoints' recipes (checkpoints/train_all.sh), cut to 30 epochs, for the parity runs.
PARITY_RECIPES = {
    "vae": ({"latent_dim": 200, "prior_components": 100},
            {"binarize": True, "shift": 1, "kl_warmup_epochs": 10, "schedule": "cosine"}),
    "conv-vae": ({"latent_dim": 16, "channels": (32, 64, 128), "hidden_dim": 256, "prior_components": 100},
                 {"binarize": True, "shift": 1, "kl_warmup_epochs": 10, "schedule": "cosine"}),
}
PARITY_EPOCHS = 30


class PILDigits(torch.utils.data.Dataset):
    """The torchvision way: a PIL image per item, converted by ToTensor in __getitem__."""

    def __init__(self, x: np.ndarray):
        from torchvision import transforms

        self.images = [Image.fromarray(a) for a in x]
        self.to_tensor = transforms.ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.to_tensor(self.images[i]), 0


def stock_bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image with torch's own kernel, as pytorch/examples computes it (our engine has its own)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def reference_samples_per_s(kind: str, x: np.ndarray, max_batches: int) -> float:
    """pytorch/examples vae/main.py's loop: DataLoader over a PIL Dataset, same model and batch size, fp32,
    and torch's stock kernels (the same loss, through ``F.binary_cross_entropy_with_logits``)."""
    with mock.patch.object(distributions, "bernoulli_nll", stock_bernoulli_nll):
        return _reference_loop(kind, x, max_batches)


def _reference_loop(kind: str, x: np.ndarray, max_batches: int) -> float:
    torch.manual_seed(0)
    model = build_model(kind).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(PILDigits(x), batch_size=BATCH, shuffle=True)
    seen, start = 0, None
    for i, (xb, _) in enumerate(loader):
        if i == 1:  # the first batch pays one-off costs; time from the second
            seen, start = 0, time.perf_counter()
        loss = model.loss(xb).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(xb)
        if i >= max_batches:
            break
    return seen / (time.perf_counter() - start)


def engine_samples_per_s(kind: str, data, epochs: int, precision: str, device: str = "cpu",
                         batch_size: int = BATCH) -> float:
    """Our loop as the CLI runs it; the best epoch's samples/s after a warm-up epoch."""
    torch.manual_seed(0)
    config = TrainConfig(epochs=epochs + 1, batch_size=batch_size, device=device, precision=precision)
    result = train(build_model(kind), data, config)
    return float(max(h.samples_per_s for h in result.history[1:]))


def matmul_flops_per_sample(kind: str) -> float:
    """FLOPs of one training step's matrix products (forward and backward), per sample."""
    model = build_model(kind).train()
    x = torch.rand(BATCH, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model.loss(x).total.backward()
    return counter.get_total_flops() / BATCH


def matmul_flops_per_s(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 20, rounds: int = 5,
                       device: str = "cpu") -> float:
    """GFLOP/s of an n×n×n product in ``dtype``: the best of ``rounds`` timings of ``repeats`` products."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def parity(kind: str, data, epochs: int = PARITY_EPOCHS, seed: int = 0) -> dict:
    """Validation −ELBO (binarized, as trained; float32 evaluation) after the same run in fp32 and in bf16."""
    from vaedemo.metrics import evaluate

    model_kw, train_kw = PARITY_RECIPES[kind]
    out = {"epochs": epochs, "model": model_kw, "recipe": train_kw}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(seed)
        model = build_model(kind, **model_kw)
        start = time.perf_counter()
        result = train(model, data, TrainConfig(epochs=epochs, seed=seed, device="cpu", precision=precision,
                                                **train_kw))
        metrics = evaluate(result.model, data.x_val, data.y_val, iwae_k=0, binarized=True, seed=0)
        out[precision] = {"neg_elbo": metrics["neg_elbo"], "best_epoch": result.best_epoch,
                          "seconds": time.perf_counter() - start}
    out["relative_gap"] = abs(out["bf16"]["neg_elbo"] - out["fp32"]["neg_elbo"]) / out["fp32"]["neg_elbo"]
    return out


def _cuda_figures(data, quick: bool) -> dict:
    """On a CUDA GPU: our samples/s for the VAE at batch 128 and 1024, fp32 and bf16, data on the device."""
    out = {"device": torch.cuda.get_device_name(0),
           "matmul_gflops": {p: matmul_flops_per_s(d, repeats=50, device="cuda") / 1e9
                             for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}}
    for batch in (128, 1024):
        for precision in ("fp32", "bf16"):
            out[f"vae_b{batch}_{precision}"] = engine_samples_per_s("vae", data, 1 if quick else 3, precision,
                                                                    device="cuda", batch_size=batch)
    return out


def run(quick: bool = False, parity_runs: bool = True) -> dict:
    data = mnist10k()
    small = data.limit(512) if quick else data
    rounds = 1 if quick else 3
    native = native_bf16("cpu")
    precisions = ["fp32", "bf16"] if native else ["fp32"]
    out = {"batch": BATCH, "native_bf16": native,
           "auto_precision": resolve_precision("auto", "cpu", build_model("vae")),  # the MLP models'
           "precisions": precisions, "rounds": rounds}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    out["matmul_gflops"] = {p: matmul_flops_per_s(dtypes[p], repeats=2 if quick else 20) / 1e9
                            for p in ("fp32", "bf16")}
    best: dict = {}
    for _ in range(rounds):  # interleaved, so a disturbance hits every figure alike
        for kind in KINDS:
            ref = reference_samples_per_s(kind, small.x_train, 3 if quick else 60)
            best[(kind, "ref")] = max(best.get((kind, "ref"), 0.0), ref)
            for p in precisions:
                ours = engine_samples_per_s(kind, small, 1 if quick else 2, p)
                best[(kind, p)] = max(best.get((kind, p), 0.0), ours)
    for kind in KINDS:
        flops = matmul_flops_per_sample(kind)
        entry = {"reference_samples_per_s": best[(kind, "ref")], "train_mflops_per_sample": flops / 1e6}
        for p in precisions:
            sps = best[(kind, p)]
            entry[p] = {"samples_per_s": sps, "speedup": sps / best[(kind, "ref")],
                        "share_of_matmul_bound": flops * sps / (out["matmul_gflops"][p] * 1e9)}
        auto = resolve_precision("auto", "cpu", build_model(kind))  # per model: fp32 for the conv ones on a CPU
        entry["auto"] = dict(entry[auto], precision=auto)
        out[kind] = entry
    if parity_runs:
        out["parity"] = {kind: parity(kind, data.limit(600) if quick else data, epochs=2 if quick else PARITY_EPOCHS)
                         for kind in PARITY_RECIPES} if native else {}
    if torch.cuda.is_available():
        out["cuda"] = _cuda_figures(data, quick)
    return out
