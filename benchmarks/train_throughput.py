"""Training throughput: vaedemo's engine against a pytorch/examples-style loop and the machine's matmul limit."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from vaedemo.data import mnist10k
from vaedemo.models import build_model
from vaedemo.training import TrainConfig, train

BATCH = 128


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


def reference_samples_per_s(kind: str, x: np.ndarray, max_batches: int) -> float:
    """pytorch/examples vae/main.py's loop: DataLoader over a PIL Dataset, same model and batch size."""
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


def engine_samples_per_s(kind: str, data, epochs: int) -> float:
    torch.manual_seed(0)
    result = train(build_model(kind), data, TrainConfig(epochs=epochs + 1, batch_size=BATCH, device="cpu"))
    return float(np.median([h.samples_per_s for h in result.history[1:]]))  # skip the warm-up epoch


def training_flops_per_sample(kind: str) -> float:
    model = build_model(kind).train()
    x = torch.rand(BATCH, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model.loss(x).total.backward()
    return counter.get_total_flops() / BATCH


def matmul_flops_per_s(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def run(quick: bool = False) -> dict:
    data = mnist10k()
    if quick:
        data = data.limit(512)
    epochs = 1 if quick else 3
    out = {"matmul_gflops": matmul_flops_per_s(repeats=2 if quick else 20) / 1e9}
    for kind in ("vae", "ae"):
        ours = engine_samples_per_s(kind, data, epochs)
        ref = reference_samples_per_s(kind, data.x_train, 3 if quick else 60)
        flops = training_flops_per_sample(kind)
        out[kind] = {
            "engine_samples_per_s": ours,
            "reference_samples_per_s": ref,
            "speedup": ours / ref,
            "train_mflops_per_sample": flops / 1e6,
            "share_of_matmul_peak": flops * ours / (out["matmul_gflops"] * 1e9),
        }
    return out
