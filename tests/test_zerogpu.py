"""ZeroGPU: spaces.GPU wraps the computing handlers only on a Space; chunked training matches one run."""

import importlib.machinery
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vaedemo import zerogpu
from vaedemo.data import mnist10k
from vaedemo.models import build_model
from vaedemo.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_spaces(monkeypatch):
    """A stand-in for the `spaces` package that records each GPU request's duration."""
    calls = []
    mod = types.ModuleType("spaces")
    mod.__spec__ = importlib.machinery.ModuleSpec("spaces", None)

    def GPU(duration=60):
        def deco(fn):
            def wrapped(*args, **kwargs):
                calls.append((fn.__name__, duration))
                return fn(*args, **kwargs)

            return wrapped

        return deco

    mod.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", mod)
    monkeypatch.setenv("SPACE_ID", "someone/vaedemo")
    return calls


def test_without_spaces_nothing_is_wrapped(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)

    def f():
        return 1

    assert zerogpu.gpu("reconstruct")(f) is f
    assert not zerogpu.on_zerogpu()


def test_on_zerogpu_handlers_ask_for_their_duration(fake_spaces):
    assert zerogpu.on_zerogpu()
    wrapped = zerogpu.gpu("latent_map")(lambda: 42)
    assert wrapped() == 42 and fake_spaces == [("<lambda>", zerogpu.DURATIONS["latent_map"])]


def test_chunked_training_matches_one_run_and_returns_cpu_weights(fake_spaces):
    data = mnist10k().limit(600)
    config = TrainConfig(epochs=4, batch_size=128, seed=1, device="cpu")
    torch.manual_seed(0)
    straight = train(build_model("vae", latent_dim=4), data, config, keep_best=False)
    torch.manual_seed(0)
    chunked = zerogpu.train_in_chunks(build_model("vae", latent_dim=4), data, config, chunk_epochs=2)
    assert [name for name, _ in fake_spaces] == ["_train_chunk", "_train_chunk"]
    assert [h.epoch for h in chunked.history] == [1, 2, 3, 4]
    np.testing.assert_allclose([h.val_loss for h in chunked.history], [h.val_loss for h in straight.history], rtol=1e-5)
    for (k, a), b in zip(chunked.model.state_dict().items(), straight.model.state_dict().values()):
        assert a.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_importing_the_app_does_not_initialise_cuda():
    code = "import torch, vaedemo.ui, vaedemo.jobs, vaedemo.zerogpu; print(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


FAKE_SPACES = """
import functools
CALLS = []
def GPU(duration=60):
    def deco(fn):
        @functools.wraps(fn)
        def wrapped(*a, **k):
            CALLS.append((fn.__name__, duration))
            return fn(*a, **k)
        return wrapped
    return deco
"""


def test_on_a_zerogpu_space_the_app_wraps_its_computing_handlers(tmp_path):
    (tmp_path / "spaces.py").write_text(FAKE_SPACES)
    code = (
        "import vaedemo.ui as ui, vaedemo.zerogpu as z, torch; print(sorted(set(z.WRAPPED)));"
        "print(torch.cuda.is_initialized())"
    )
    env = {**__import__("os").environ, "SPACE_ID": "someone/vaedemo", "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    wrapped, cuda_initialised = out.stdout.strip().splitlines()[-2:]
    for name in ("reconstruct", "sample", "interpolate", "traverse", "latent_map", "reconstruct_sketch"):
        assert f"'{name}'" in wrapped
    assert cuda_initialised == "False"


def test_runs_train_in_gpu_sized_chunks_on_zerogpu(fake_spaces, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    from vaedemo.runs import RunSpec, run

    outcome = run(
        RunSpec(
            name="zg",
            model="vae",
            latent_dim=2,
            max_train=300,
            iwae_k=0,
            train=TrainConfig(epochs=zerogpu.CHUNK_EPOCHS + 1, device="cpu"),
        )
    )
    assert outcome.saved and outcome.result.epochs_done == zerogpu.CHUNK_EPOCHS + 1
    assert [name for name, _ in fake_spaces] == ["_train_chunk", "_train_chunk"]
    assert (tmp_path / "zg" / "model.safetensors").is_file()


def test_the_wall_clock_cap_holds_when_training_in_chunks(fake_spaces, monkeypatch):
    """Defect: every chunk ran with max_seconds=0 and nothing checked the time between chunks, so
    VAEDEMO_MAX_TRAIN_SECONDS (300 s on a Space) did nothing on ZeroGPU."""
    data = mnist10k().limit(300)
    clock = [0.0]
    monkeypatch.setattr(zerogpu.time, "monotonic", lambda: clock[0])
    real_chunk = zerogpu._train_chunk

    def slow_chunk(*args, **kwargs):  # each chunk "takes" 40 s of wall clock
        out = real_chunk(*args, **kwargs)
        clock[0] += 40.0
        return out

    monkeypatch.setattr(zerogpu, "_train_chunk", slow_chunk)
    torch.manual_seed(0)
    config = TrainConfig(epochs=4 * zerogpu.CHUNK_EPOCHS, device="cpu", max_seconds=60.0)
    result = zerogpu.train_in_chunks(build_model("vae", latent_dim=2), data, config)
    assert result.stopped == "time"
    assert result.epochs_done == 2 * zerogpu.CHUNK_EPOCHS  # 0 s, 40 s: two chunks; at 80 s the cap has passed
    assert len(result.history) == result.epochs_done


def test_chunks_get_the_time_that_is_left(fake_spaces, monkeypatch):
    seen = []
    real_chunk = zerogpu._train_chunk

    def spy(kind, model_config, state, opt_state, data, train_config, start_epoch):
        seen.append(train_config.max_seconds)
        return real_chunk(kind, model_config, state, opt_state, data, train_config, start_epoch)

    monkeypatch.setattr(zerogpu, "_train_chunk", spy)
    config = TrainConfig(epochs=zerogpu.CHUNK_EPOCHS + 1, device="cpu", max_seconds=1e6)
    zerogpu.train_in_chunks(build_model("vae", latent_dim=2), mnist10k().limit(200), config)
    assert len(seen) == 2 and 0 < seen[1] <= seen[0] <= 1e6


def test_no_gpu_call_runs_inside_another(tmp_path):
    """Defect: handlers that call another handler's body through fn.__wrapped__ made, on ZeroGPU, a GPU call
    inside a GPU call. The fake spaces.GPU below counts how deep calls nest."""
    (tmp_path / "spaces.py").write_text(
        "import functools\nDEPTH = [0]\nMAX = [0]\n"
        "def GPU(duration=60):\n"
        "    def deco(fn):\n"
        "        @functools.wraps(fn)\n"
        "        def wrapped(*a, **k):\n"
        "            DEPTH[0] += 1; MAX[0] = max(MAX[0], DEPTH[0])\n"
        "            try:\n"
        "                return fn(*a, **k)\n"
        "            finally:\n"
        "                DEPTH[0] -= 1\n"
        "        return wrapped\n"
        "    return deco\n"
    )
    code = (
        "import spaces\n"
        "from vaedemo.ui import latent_map, sample\n"
        "from vaedemo.checkpoints import save_checkpoint\n"
        "from vaedemo.models import build_model\n"
        "save_checkpoint(build_model('vae', latent_dim=2, hidden_dim=8), 'zg-vae')\n"
        "latent_map.latent_map_auto('zg-vae', 'pca', 500, None, None, lambda *a, **k: None)\n"
        "sample.sample_first_visit('zg-vae', 4, 1.0, 0, 'any', None)\n"
        "print(spaces.MAX[0])\n"
    )
    env = {
        **__import__("os").environ,
        "SPACE_ID": "someone/vaedemo",
        "PYTHONPATH": str(tmp_path),
        "VAEDEMO_CHECKPOINT_DIR": str(tmp_path / "ck"),
        "VAEDEMO_DEVICE": "cpu",
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"  # each handler is one GPU call, never one inside another
