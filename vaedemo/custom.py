"""Your own model in the app: any ``torch.nn.Module`` with ``encode(x) -> (mu, logvar or None)`` and
``decode(z) -> (N, 1, 28, 28)`` pixel probabilities, checked once and served beside the checkpoints.

``vaedemo.serve(models={"mine": module})`` from Python, ``vaedemo serve --model-module path.py:build`` from the
command line. A model that does not fit is refused with one sentence; the others are served all the same.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .models import LatentModel, MixturePrior

CHECK_DIGITS = 8  # bundled digits encoded, and codes decoded, by the check at start
MAX_LATENT = 4096
EPS = 1e-6  # decoded probabilities are clamped to [EPS, 1 - EPS] before taking their logits
TOLERANCE = 1e-4  # how far outside [0, 1] a decoded pixel may stray (float rounding)


@dataclass
class UserConfig:
    latent_dim: int  # read from the model's own encode() by the check
    image_size: int = 28


class UserModel(LatentModel):
    """A user's module behind the app's model interface; the module itself is never changed."""

    kind = "custom"

    def __init__(self, module: nn.Module, latent_dim: int, variational: bool):
        super().__init__(UserConfig(latent_dim))
        self.module = module
        self.variational = variational
        prior = getattr(module, "prior", None)
        self.prior = prior if isinstance(prior, MixturePrior) else None  # else N(0, I) (or the AE's code Gaussian)
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        # A module without parameters still tells the app where to send its inputs.
        self.anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def encode(self, x, y=None):
        mu, logvar = self.module.encode(x)
        return mu, logvar

    def decode(self, z, y=None):
        return self.module.decode(z)

    def decode_logits(self, z, y=None):
        return torch.logit(self.module.decode(z).clamp(EPS, 1 - EPS))


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _call(name: str, what: str, fn, arg: torch.Tensor) -> Any:
    try:
        with torch.no_grad():
            return fn(arg)
    except Exception as e:  # the user's code: any failure becomes the refusal's sentence
        raise ValueError(f"Not serving {name!r}: its {what} failed ({type(e).__name__}: {str(e)[:160]}).") from None


def _probabilities(name: str, what: str, out: Any, n: int) -> None:
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, 1, 28, 28):
        raise ValueError(f"Not serving {name!r}: its {what} returned {_shape(out)}; it must return ({n}, 1, 28, 28) "
                         "pixel probabilities.")
    if not torch.isfinite(out).all():
        raise ValueError(f"Not serving {name!r}: its {what} returned NaN or infinite pixels.")
    lo, hi = float(out.min()), float(out.max())
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise ValueError(f"Not serving {name!r}: its {what} returned values from {lo:.3g} to {hi:.3g}; it must return "
                         "probabilities in [0, 1] (apply a sigmoid to logits).")


def check_model(name: str, module: Any) -> UserModel:
    """Check ``module`` once (shapes, value ranges, a decode of a few codes) and wrap it; ValueError with one
    sentence when it does not fit."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"Not serving {name!r}: it is a {type(module).__name__}, not a torch.nn.Module.")
    if not callable(getattr(module, "encode", None)) or not callable(getattr(module, "decode", None)):
        raise ValueError(f"Not serving {name!r}: it needs encode(x) -> (mu, logvar or None) and decode(z) methods.")
    from .data import bundled_digits

    module.eval()
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x, _ = bundled_digits()
    batch = torch.from_numpy(x[:CHECK_DIGITS].astype(np.float32) / 255.0)[:, None].to(device)  # (8, 1, 28, 28)
    out = _call(name, "encode(x) on 8 digits of shape (8, 1, 28, 28) in [0, 1]", module.encode, batch)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"Not serving {name!r}: its encode(x) returned {_shape(out)}; it must return a pair "
                         "(mu, logvar), with logvar None for a plain autoencoder.")
    mu, logvar = out
    if (not isinstance(mu, torch.Tensor) or mu.ndim != 2 or len(mu) != CHECK_DIGITS
            or not 1 <= mu.shape[1] <= MAX_LATENT):
        raise ValueError(f"Not serving {name!r}: its encode(x) gave mu of shape {_shape(mu)}; it must be "
                         f"({CHECK_DIGITS}, D) with D from 1 to {MAX_LATENT}.")
    if logvar is not None and (not isinstance(logvar, torch.Tensor) or logvar.shape != mu.shape):
        raise ValueError(f"Not serving {name!r}: its encode(x) gave logvar of shape {_shape(logvar)}; it must match "
                         f"mu's {tuple(mu.shape)} (or be None for a plain autoencoder).")
    if not torch.isfinite(mu).all() or (logvar is not None and not torch.isfinite(logvar).all()):
        raise ValueError(f"Not serving {name!r}: its encode(x) gave NaN or infinite codes.")
    _probabilities(name, "decode(mu)", _call(name, "decode(z)", module.decode, mu), CHECK_DIGITS)
    z = torch.randn(4, mu.shape[1], generator=torch.Generator().manual_seed(0)).to(device=mu.device, dtype=mu.dtype)
    _probabilities(name, "decode(z) of 4 codes from N(0, I)", _call(name, "decode(z)", module.decode, z), 4)
    return UserModel(module, int(mu.shape[1]), variational=logvar is not None)


def fingerprint(model: nn.Module) -> int:
    """A content hash of the weights (as ``store.weights_fingerprint`` is for a checkpoint's file)."""
    h = hashlib.sha256()
    for key, t in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:7], "big")


def register_models(models: dict[str, Any] | None) -> list[str]:
    """Check and register each named module with the app's model store; returns the refusals, one sentence
    each (a refused model is left out, the others are served)."""
    if not models:
        return []
    from .inference import STORE

    refusals = []
    for name, module in (models or {}).items():
        try:
            model = check_model(str(name), module)
            config = {"name": name, "model": {"kind": model.kind, "config": {"latent_dim": model.latent_dim}},
                      "class_names": [str(i) for i in range(10)]}
            STORE.register(name, model, config, fingerprint(model))
        except ValueError as e:
            message = str(e)
            refusals.append(message if message.startswith("Not serving") else f"Not serving {name!r}: {message}")
    return refusals


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._") or "mine"


def load_model_module(spec: str) -> dict[str, Any]:
    """``path.py:build`` (``:build`` by default) → the models ``build()`` returns: a dict of name → module, or
    one module named after the file."""
    path_text, _, fn_name = str(spec).rpartition(":") if ":" in str(spec) else (str(spec), "", "build")
    path = Path(path_text).expanduser()
    if path.suffix != ".py" or not path.is_file():
        raise ValueError(f"There is no Python file {str(path)!r}; give --model-module as path/to/file.py:build.")
    module_name = f"vaedemo_user_{_slug(path.stem).replace('-', '_').replace('.', '_')}"
    loaded = importlib.util.spec_from_file_location(module_name, path)
    user = importlib.util.module_from_spec(loaded)
    try:
        sys.modules[module_name] = user
        loaded.loader.exec_module(user)
    except Exception as e:
        raise ValueError(f"Running {path.name} failed ({type(e).__name__}: {str(e)[:160]}).") from None
    build = getattr(user, fn_name, None)
    if not callable(build):
        raise ValueError(f"{path.name} has no function {fn_name!r} to build the model with.")
    try:
        built = build()
    except Exception as e:
        raise ValueError(f"{path.name}:{fn_name}() failed ({type(e).__name__}: {str(e)[:160]}).") from None
    if isinstance(built, dict):
        return built
    if isinstance(built, nn.Module):
        return {_slug(path.stem): built}
    raise ValueError(f"{path.name}:{fn_name}() returned a {type(built).__name__}; return a torch.nn.Module or a "
                     "dict of name → module.")


def serve(models: dict[str, Any] | None = None, *, modules: Iterable[str] = (), host: str | None = None,
          port: int | None = None) -> None:
    """Start the app with your own models in every model list, beside the checkpoints, and serve until
    interrupted. ``models`` maps names to modules; ``modules`` are ``path.py:build`` specs (the CLI's
    ``--model-module``). Each model is checked once; a refusal is printed and the others are served."""
    every: dict[str, Any] = dict(models or {})
    for spec in modules:
        try:
            every.update(load_model_module(spec))
        except ValueError as e:
            print(f"vaedemo: not serving the models of {spec}: {e}", file=sys.stderr, flush=True)
    for refusal in register_models(every):
        print(f"vaedemo: {refusal}", file=sys.stderr, flush=True)
    if host:
        os.environ["GRADIO_SERVER_NAME"] = host
    if port is not None:
        os.environ["PORT"] = str(port)
    from .ui import serve as serve_app  # Gradio is imported only to serve

    serve_app()
