"""Training: the loss goes down, runs are reproducible, stop and resume work, bad settings are refused."""

import threading

import numpy as np
import pytest
import torch

from vaedemo.data import mnist10k
from vaedemo.models import build_model
from vaedemo.runs import RunSpec, run
from vaedemo.training import TrainConfig, random_shift, train


@pytest.fixture(scope="module")
def small():
    return mnist10k().limit(1500)


def _val(result):
    return [h.val_loss for h in result.history]


def test_short_run_lowers_validation_loss(small):
    torch.manual_seed(0)
    model = build_model("vae", latent_dim=8)
    events = []
    result = train(model, small, TrainConfig(epochs=3, batch_size=64), progress=events.append)
    losses = _val(result)
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 10  # nats per image
    epoch_ends = [e for e in events if e.stats is not None]
    assert [e.epoch for e in epoch_ends] == [1, 2, 3]
    assert epoch_ends[-1].fraction == 1.0 and all(e.samples_per_s > 0 for e in epoch_ends)
    stats = result.history[-1]
    assert stats.val_recon > 0 and stats.val_kl > 0 and stats.samples_per_s > 0


def test_ae_trains_with_zero_kl(small):
    torch.manual_seed(0)
    result = train(build_model("ae"), small, TrainConfig(epochs=2))
    assert all(h.train_kl == 0 for h in result.history)
    assert result.history[-1].val_loss < result.history[0].val_loss


def test_training_is_reproducible_on_cpu(small):
    def once():
        torch.manual_seed(123)
        m = build_model("conv-vae", latent_dim=4)
        return train(m, small.limit(300), TrainConfig(epochs=2, seed=7, shift=2, device="cpu"))

    a, b = once(), once()
    assert _val(a) == _val(b)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_stop_signal_ends_the_run_early(small):
    stop = threading.Event()

    def progress(p):
        if p.epoch == 1 and p.stats is not None:
            stop.set()

    result = train(build_model("vae", latent_dim=4), small, TrainConfig(epochs=50), progress=progress, stop=stop)
    assert result.stopped == "stop" and len(result.history) == 1


def test_kl_warmup_ramps_beta(small):
    result = train(build_model("vae", latent_dim=4), small.limit(200), TrainConfig(epochs=3, kl_warmup_epochs=2))
    assert [h.beta for h in result.history] == [0.0, 0.5, 1.0]


def test_resume_continues_like_an_uninterrupted_run(tmp_path, monkeypatch, small):
    monkeypatch.setenv("VAEDEMO_CHECKPOINT_DIR", str(tmp_path))
    data = small.limit(400)
    tc = lambda n: TrainConfig(epochs=n, seed=3, device="cpu")  # noqa: E731
    torch.manual_seed(0)
    straight = run(RunSpec(name="straight", model="vae", latent_dim=4, iwae_k=0, train=tc(4)), data=data)
    torch.manual_seed(0)
    run(RunSpec(name="halves", model="vae", latent_dim=4, iwae_k=0, train=tc(2)), data=data)
    resumed = run(RunSpec(name="halves", resume=True, iwae_k=0, train=tc(2)), data=data)
    assert [h.epoch for h in resumed.result.history] == [3, 4]
    np.testing.assert_allclose(_val(resumed.result), _val(straight.result)[2:], rtol=1e-4)


def test_random_shift_moves_each_image_within_bounds():
    x = torch.zeros(50, 1, 28, 28)
    x[:, :, 14, 14] = 1
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    pos = out[:, 0].nonzero()[:, 1:]
    assert len(pos) == 50 and (pos - 14).abs().max() <= 2 and len({tuple(p.tolist()) for p in pos}) > 5


@pytest.mark.parametrize("field,value", [("epochs", 0), ("epochs", float("nan")), ("epochs", 10**9),
                                         ("batch_size", -1), ("lr", float("inf")), ("lr", -1.0)])
def test_silly_settings_are_refused(field, value, small):
    with pytest.raises(ValueError, match=field.replace("_", " ")):
        train(build_model("ae"), small, TrainConfig(**{field: value}))


def test_mmd_penalty_pulls_the_codes_toward_the_prior(small):
    """The InfoVAE term: with it, a VAE's codes match N(0, I) more closely after the same training."""
    from vaedemo.models import prior_mmd

    def codes_mmd(weight):
        torch.manual_seed(0)
        model = build_model("vae", latent_dim=4, hidden_dim=64)
        train(model, small, TrainConfig(epochs=3, batch_size=100, mmd=weight))
        with torch.no_grad():
            mu, logvar = model.encode(torch.as_tensor(small.x_val[:500], dtype=torch.float32).unsqueeze(1) / 255)
            torch.manual_seed(1)
            return float(prior_mmd(mu + torch.randn_like(mu) * (0.5 * logvar).exp()))

    assert codes_mmd(200.0) < 0.5 * codes_mmd(0.0)
    with pytest.raises(ValueError, match="mmd"):
        TrainConfig(mmd=-1.0).validate()


def test_learnt_prior_moves_onto_the_codes(small):
    """Training a mixture prior raises log p(z) of the codes above what N(0, I) gives them."""
    torch.manual_seed(0)
    model = build_model("vae", latent_dim=2, hidden_dim=64, prior_components=10)
    train(model, small, TrainConfig(epochs=6, batch_size=50, lr=2e-2, kl_warmup_epochs=1))
    with torch.no_grad():
        mu, logvar = model.encode(torch.as_tensor(small.x_val[:500], dtype=torch.float32).unsqueeze(1) / 255)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        learnt = float(model.log_prior(z).mean())
        standard = float(torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1).mean())
    assert learnt > standard + 0.5
    with pytest.raises(ValueError, match="MMD"):
        train(model, small, TrainConfig(epochs=1, mmd=10.0))


def test_ema_keeps_the_averaged_weights(small):
    """With weight averaging the kept weights trail the last ones: at decay 0.99999 they stay near
    the first step's weights (where the average starts)."""
    def run_with(ema):
        torch.manual_seed(0)
        model = build_model("ae", latent_dim=2)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        result = train(model, small, TrainConfig(epochs=3, batch_size=100, ema=ema), keep_best=False)
        moved = sum(float((v - start[k]).abs().sum()) for k, v in model.state_dict().items())
        return moved, result

    moved_plain, _ = run_with(0.0)
    moved_avg, result = run_with(0.99999)
    assert moved_avg < 0.3 * moved_plain
    assert result.history[-1].val_loss > 0  # validation scored the averaged (nearly untrained) weights
    moved_half, _ = run_with(0.5)  # a short average: close to the last weights
    assert moved_half > 0.5 * moved_plain
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0).validate()
