"""The few functions a user's script starts from, re-exported as ``vaedemo.load_model`` and friends.

Here rather than in ``checkpoints`` because loading ``hf://`` names needs ``hub``, which itself
builds on ``checkpoints``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import find, load_folder
from .hub import PREFIX, download
from .models import LatentModel


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> LatentModel:
    """Load a checkpoint by name (a slug under the checkpoints folder) or by ``pathlib.Path``.

    A string is always treated as a name, so user input such as ``'../app'`` is refused
    rather than followed; pass a ``Path`` to load a folder elsewhere on purpose, or
    ``"hf://user/name"`` for a checkpoint pushed to the Hugging Face Hub.
    """
    if isinstance(name_or_path, Path):
        folder = name_or_path
    elif isinstance(name_or_path, str) and name_or_path.startswith(PREFIX):
        folder = download(name_or_path)
    else:
        folder = find(name_or_path)
    model, _ = load_folder(folder, device)
    return model
