"""Tiny trained checkpoints for the service tests: one per model kind, trained for seconds on CPU.

The MLP models get enough steps to reconstruct recognisably (behaviour tests use them); the conv
models get one short epoch, enough for tests of shapes, caching and exactness.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from vaedemo.data import Dataset, mnist10k
from vaedemo.runs import RunSpec, run
from vaedemo.training import TrainConfig

# name → (model kind, latent size, hidden size, training digits, epochs, batch size, learning rate)
TINY = {
    "tiny-ae": ("ae", 4, None, 600, 1, 128, 1e-3),
    "tiny-vae2": ("vae", 2, 128, 3000, 2, 64, 3e-3),  # the 2-D latent the manifold grid needs
    "tiny-cvae": ("cvae", 4, 128, 3000, 2, 64, 3e-3),
    "tiny-conv-vae": ("conv-vae", 4, None, 600, 1, 128, 1e-3),
    "tiny-mix-vae": ("vae", 4, 128, 3000, 2, 64, 3e-3),
}
PRIORS = {"tiny-mix-vae": 5}  # name → components of its learnt mixture prior (the rest use N(0, I))
POLICY_ENV = (
    "VAEDEMO_TRAINING",
    "VAEDEMO_MAX_EPOCHS",
    "VAEDEMO_MAX_TRAIN_ITEMS",
    "VAEDEMO_MAX_TRAIN_SECONDS",
    "SPACE_ID",
)
VAL_ITEMS = 200  # a smaller validation split than mnist-10k's 1,000 keeps the final evaluation quick


def train_tiny(root: Path, names: list[str] | None = None) -> Path:
    """Train the TINY checkpoints into ``root`` (which must be $VAEDEMO_CHECKPOINT_DIR) and return it."""
    full = mnist10k()
    data = Dataset(full.name, full.x_train, full.y_train, full.x_val[:VAL_ITEMS], full.y_val[:VAL_ITEMS])
    for name in names or TINY:
        kind, latent, hidden, max_train, epochs, batch_size, lr = TINY[name]
        torch.manual_seed(0)  # the weights are initialised before training seeds the run
        spec = RunSpec(
            name=name,
            model=kind,
            latent_dim=latent,
            hidden_dim=hidden,
            max_train=max_train,
            iwae_k=5,
            prior_components=PRIORS.get(name, 0),
            train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device="cpu"),
        )
        run(spec, data=data)
    return root


@contextlib.contextmanager
def single_threaded():
    """One thread for torch, BLAS and OpenMP while tiny tests run, then restore.

    On a small machine shared with other jobs, OpenMP threads waiting on each other made these
    tests 5x slower (71 s against 13 s with one thread on 2 busy cores); tiny models gain nothing
    from threads anyway.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A checkpoints folder holding the TINY models, set as $VAEDEMO_CHECKPOINT_DIR for the module."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    with pytest.MonkeyPatch.context() as mp, single_threaded():
        mp.setenv("VAEDEMO_CHECKPOINT_DIR", str(root))
        mp.setenv("VAEDEMO_DEVICE", "cpu")
        for policy in POLICY_ENV:  # other modules' fixtures may have set caps; these tests assume the defaults
            mp.delenv(policy, raising=False)
        train_tiny(root)
        yield root
