"""CUDA paths (run where a GPU is present; CI has none, so these are skipped there).

They check that every path is device-correct: training with data on the GPU, bf16 autocast,
loading, inference and the app's backend functions, and that results come back as numpy.
"""

import numpy as np
import pytest
import torch

from vaedemo.data import mnist10k
from vaedemo.models import REGISTRY, build_model
from vaedemo.training import TrainConfig, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("kind", [*REGISTRY, "vae+mixture"])
@pytest.mark.parametrize("amp", [False, True])
def test_training_on_cuda_keeps_data_on_the_device(kind, amp):
    data = mnist10k().limit(1000)
    extra = {"prior_components": 10} if kind == "vae+mixture" else {}
    model = build_model(kind.split("+")[0], latent_dim=4, **extra)
    result = train(model, data, TrainConfig(epochs=2, device="cuda", amp=amp))
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.history[-1].val_loss < result.history[0].val_loss + 1
    assert all(t.device.type == "cpu" for t in result.optimizer_state.values())


@cuda
def test_cuda_and_cpu_models_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    import vaedemo
    from vaedemo.checkpoints import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model("conv-vae", latent_dim=3), "gpu")
    cpu, gpu = vaedemo.load_model("gpu", device="cpu"), vaedemo.load_model("gpu", device="cuda")
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(gpu.decode(gpu.encode(x.cuda())[0]).cpu(), cpu.decode(cpu.encode(x)[0]),
                                   rtol=1e-3, atol=1e-4)


@cuda
def test_service_runs_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("VAEDEMO_DEVICE", "cuda")
    from vaedemo import inference as service
    from vaedemo.runs import RunSpec, run

    run(RunSpec(name="g", model="vae", latent_dim=2, max_train=600, iwae_k=5,
                train=TrainConfig(epochs=1, device="cuda")))
    service.STORE.clear()
    rec = service.reconstruct(3, "g")
    assert isinstance(rec.recon, np.ndarray) and rec.recon.shape == (28, 28)
    assert service.sample("g", 8).shape == (8, 28, 28)
    run(RunSpec(name="gm", model="vae", latent_dim=2, prior_components=5, max_train=600, iwae_k=5,
                train=TrainConfig(epochs=1, device="cuda")))
    assert service.sample("gm", 8).shape == (8, 28, 28) and service.reconstruct(3, "gm").neg_elbo is not None
    assert service.latent_map("g", "pca", n=200).coords.shape == (200, 2)
    assert service.manifold_grid("g", n=5).shape == (140, 140)
