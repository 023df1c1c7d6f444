"""A small digit classifier: it scores whether prior samples read as digits, and labels them in the UI.

Saved in the checkpoints folder with the same atomic, pickle-free format, under kind "classifier".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save as st_save

from .checkpoints import find, read_config, read_tensors, resolve, save_files
from .data import Dataset, to_unit_float
from .training import random_shift

KIND = "classifier"
DEFAULT_NAME = "classifier-mnist"


@dataclass
class ClassifierConfig:
    num_classes: int = 10
    width: int = 32  # channels of the first conv block; the second has twice as many


class DigitClassifier(nn.Module):
    """Two conv blocks and a linear head: ~99% on MNIST, small enough to train in a minute on a CPU."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        w = config.width
        self.config = config
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * 49, 128), nn.ReLU(), nn.Linear(128, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, num_classes) logits

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities (N, C) for images in [0, 1], (N, 28, 28) or (N, 1, 28, 28)."""
        return torch.cat([F.softmax(self(x), 1).cpu() for x in self._batches(images)]).numpy()

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """The penultimate layer's activations (N, 128) for images in [0, 1], (N, 28, 28) or (N, 1, 28, 28):
        the feature space of the Fréchet distance and of precision and recall (``metrics.sample_fidelity``),
        as Inception's pool features are for FID."""
        body = self.net[:-1]  # everything up to the last Linear: the 128 ReLU units it reads
        return torch.cat([body(x).cpu() for x in self._batches(images)]).double().numpy()

    def _batches(self, images: np.ndarray | torch.Tensor):
        x = torch.as_tensor(images, dtype=torch.float32)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        device = next(self.parameters()).device
        return (x[i : i + 1000].to(device) for i in range(0, len(x), 1000))


def train_classifier(data: Dataset, epochs: int = 8, seed: int = 0, lr: float = 2e-3) -> tuple[DigitClassifier, dict]:
    torch.manual_seed(seed)
    model = DigitClassifier(ClassifierConfig(num_classes=data.num_classes))
    x, y = to_unit_float(data.x_train), torch.as_tensor(data.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * math.ceil(len(x) / 128))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = F.cross_entropy(model(random_shift(x[idx], 2, gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    acc = float((model.predict_proba(to_unit_float(data.x_val)).argmax(1) == data.y_val).mean())
    return model, {"val_accuracy": acc, "epochs": epochs, "seed": seed, "n_train": len(x)}


def save_classifier(model: DigitClassifier, name: str, meta: dict) -> Path:
    config = {"format_version": 1, "name": name, "model": {"kind": KIND, "config": asdict(model.config)}, **meta}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_files(name, {"model.safetensors": st_save(state), "config.json": json.dumps(config, indent=2).encode()},
                      overwrite=True)


def load_classifier(name: str = DEFAULT_NAME) -> DigitClassifier:
    folder = find(name)
    config = read_config(folder, kinds=(KIND,))
    model = DigitClassifier(ClassifierConfig(**config["model"]["config"]))
    tensors = read_tensors(folder / "model.safetensors")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"The classifier {name!r} does not match its config ({str(e)[:100]}).") from None
    return model.eval()


def classifier_available(name: str = DEFAULT_NAME) -> bool:
    try:
        return (resolve(name) / "config.json").exists()
    except ValueError:
        return False


def sample_quality(images: np.ndarray, classifier: DigitClassifier, threshold: float = 0.9) -> dict:
    """Share of samples classified with confidence ≥ threshold, and the entropy of the class histogram."""
    probs = classifier.predict_proba(images)
    confident = probs.max(1) >= threshold
    hist = np.bincount(probs.argmax(1), minlength=probs.shape[1]) / len(probs)
    nz = hist[hist > 0]
    return {
        "confident_share": float(confident.mean()),
        "class_entropy": float(-(nz * np.log(nz)).sum()),
        "class_histogram": hist.round(4).tolist(),
        "n_samples": int(len(images)),
        "threshold": threshold,
    }
