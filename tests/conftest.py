"""Shared fixtures for the app tests: tiny trained checkpoints, and the app served on a free port.

The checkpoints are trained once per session (about 10 s on a CPU) into a temporary
VAEDEMO_CHECKPOINT_DIR; the app runs in a background thread of this process, so the handler
unit tests and the gradio_client / browser tests see the same checkpoints.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

# name → (model kind, latent size); None keeps the model's default size
TINY_CHECKPOINTS = {"tiny-ae": ("ae", None), "tiny-vae": ("vae", 2), "tiny-cvae": ("cvae", None)}

APP_ENV = {
    "VAEDEMO_TRAINING": "on",
    "VAEDEMO_MAX_TRAIN_ITEMS": "300",  # keeps the browser's training run to a second or two
    "VAEDEMO_MAX_EPOCHS": "3",
    "VAEDEMO_DEVICE": "cpu",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


@pytest.fixture(scope="session", autouse=True)
def quick_tsne():
    """The app runs t-SNE with 600 iterations (about 40 s for 10,000 codes here, once per model); the tests
    check what a map does, not how far t-SNE converges (benchmarks/maps.py measures that), so they run it with
    the fewest iterations scikit-learn allows."""
    from vaedemo.inference import maps

    saved, maps.TSNE_MAX_ITER = maps.TSNE_MAX_ITER, 250
    yield
    maps.TSNE_MAX_ITER = saved


@pytest.fixture(scope="session")
def app_env(tmp_path_factory):
    """Environment for the app (restored at the end) and a checkpoint folder with three tiny models."""
    root = tmp_path_factory.mktemp("checkpoints")
    env = {**APP_ENV, "VAEDEMO_CHECKPOINT_DIR": str(root),
           "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    saved = {k: os.environ.get(k) for k in [*env, "SPACE_ID"]}
    os.environ.update(env)
    os.environ.pop("SPACE_ID", None)

    from vaedemo.runs import RunSpec, run
    from vaedemo.training import TrainConfig

    for name, (kind, latent) in TINY_CHECKPOINTS.items():
        run(RunSpec(name=name, model=kind, latent_dim=latent, max_train=600, iwae_k=5,
                    train=TrainConfig(epochs=1)))
    from vaedemo.classifier import save_classifier, train_classifier
    from vaedemo.data import mnist10k

    reader, meta = train_classifier(mnist10k().limit(3000), epochs=2)  # labels the Sample tab's grid
    save_classifier(reader, "classifier-mnist", {"metrics": meta})
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(app_env):
    """The full app (FastAPI + Gradio) served by uvicorn in a background thread; yields its URL."""
    import uvicorn

    from vaedemo.ui import build_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="vaedemo-test-server", daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("The app did not start.")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture()
def digit_png(tmp_path) -> Path:
    """A bundled '3', drawn dark on white and enlarged, as a phone photo of paper would be."""
    import numpy as np
    from PIL import Image

    from vaedemo.data import bundled_digits

    x, y = bundled_digits()
    index = int(np.flatnonzero(y == 3)[0])
    path = tmp_path / "three.png"
    Image.fromarray(255 - x[index]).resize((140, 140), Image.Resampling.BILINEAR).save(path)
    return path
