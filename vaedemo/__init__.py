"""vaedemo: train autoencoders and VAEs on MNIST and explore their latent spaces.

The public API the app, the tests and users' scripts rely on is re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import load_model  # noqa: E402
from .checkpoints import list_checkpoints, save_checkpoint, scan_checkpoints  # noqa: E402
from .custom import serve  # noqa: E402
from .data import load_dataset  # noqa: E402
from .images import preprocess_image  # noqa: E402
from .models import REGISTRY, build_model  # noqa: E402
from .training import TrainConfig, train  # noqa: E402

__all__ = [
    "REGISTRY",
    "TrainConfig",
    "__version__",
    "build_model",
    "list_checkpoints",
    "load_dataset",
    "load_model",
    "preprocess_image",
    "save_checkpoint",
    "scan_checkpoints",
    "serve",
    "train",
]
