"""Which torch device to run on: CUDA, then Apple MPS, then CPU; ``VAEDEMO_DEVICE`` overrides."""

from __future__ import annotations

import os

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` (e.g. 'cpu', 'cuda:0'), else $VAEDEMO_DEVICE, else the best available."""
    name = requested or os.environ.get("VAEDEMO_DEVICE") or ""
    name = name.strip().lower()
    if name and name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"Unknown device {name!r}; use cpu, cuda, cuda:N or mps.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for, but no CUDA GPU is available here.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("MPS was asked for, but Apple's Metal backend is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
