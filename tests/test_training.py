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
    for (ka, va), (_kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
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


# ------------------------------------------------------------------ precision, fused Adam, step-level progress


def test_precision_auto_picks_bf16_only_where_native(monkeypatch):
    from vaedemo import training

    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    assert training.resolve_precision("auto", "cpu") == "fp32"
    assert training.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="bf16 precision was asked for, but this CPU has no native bf16"):
        training.resolve_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="bf16 precision was asked for"):  # the legacy amp=True asks for bf16
        train(build_model("vae", latent_dim=2), mnist10k().limit(100), TrainConfig(epochs=1, amp=True))
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    assert training.resolve_precision("auto", "cpu") == "bf16"
    # per model: bf16 slowed the convolutional models on a CPU, so auto keeps them in fp32 there, not on a GPU
    for kind, on_cpu in (("vae", "bf16"), ("cvae", "bf16"), ("ae", "fp32"), ("conv-vae", "fp32"), ("gan", "fp32")):
        model = build_model(kind, latent_dim=2)
        assert training.resolve_precision("auto", "cpu", model) == on_cpu, kind
        assert training.resolve_precision("auto", "cuda", model) == "bf16", kind
        assert training.resolve_precision("bf16", "cpu", model) == "bf16", kind  # asked for, it is honoured
    assert training.resolve_precision("bf16", "cpu") == "bf16"
    assert training.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        training.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half").validate()


def test_native_bf16_detection_is_consistent():
    from vaedemo import training

    assert training.native_bf16("cpu") in (True, False)
    assert training.resolve_precision("auto", "cpu") == ("bf16" if training.native_bf16("cpu") else "fp32")
    assert not training.native_bf16("meta")  # devices other than CPU and CUDA never count as native
    assert TrainConfig(amp=True).requested_precision == "bf16"
    assert TrainConfig(amp=True, precision="fp32").requested_precision == "fp32"
    assert TrainConfig().requested_precision == "auto"


def test_bf16_run_trains_with_float32_losses(small, monkeypatch):
    """bf16 mixed precision: the layers compute in bf16, what they hand on (and so the losses) is
    float32, the loss goes down and the history records the precision."""
    from vaedemo import training

    monkeypatch.setattr(training, "native_bf16", lambda device: True)  # emulated where not native: slow, but it runs
    torch.manual_seed(0)
    model = build_model("vae", latent_dim=8, hidden_dim=64)
    seen = set()
    model.Encoder.input1.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    result = train(model, small, TrainConfig(epochs=3, batch_size=64, precision="bf16"))
    assert torch.bfloat16 in seen  # the training steps (validation runs in float32)
    assert result.precision == "bf16" and {h.precision for h in result.history} == {"bf16"}
    losses = _val(result)
    assert losses[-1] < losses[0] - 10
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert all(t.dtype == torch.float32 for k, t in result.optimizer_state.items() if "exp_avg" in k)
    assert "encode" not in vars(model) and "decode_logits" not in vars(model)  # the wrappers are gone

    mlp = build_model("conv-vae", latent_dim=4)
    with training.networks_in(mlp, torch.bfloat16, "cpu"):
        out = mlp(torch.rand(8, 1, 28, 28), beta=1.0, sample=True)
    assert out.mu.dtype == out.logvar.dtype == out.x_hat.dtype == out.loss.total.dtype == torch.float32
    assert "encode" not in vars(mlp)


def test_fp32_run_records_fp32(small):
    result = train(build_model("ae", latent_dim=2), small.limit(200), TrainConfig(epochs=1, precision="fp32"))
    assert result.precision == "fp32" and result.history[0].precision == "fp32"


def test_fused_adam_is_used_where_supported(small):
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    from vaedemo.training import make_adam

    opt = make_adam(build_model("ae").parameters(), lr=1e-3)
    assert opt.defaults["fused"] is ("cpu" in _get_fused_kernels_supported_devices())
    result = train(build_model("ae", latent_dim=2), small.limit(200), TrainConfig(epochs=1))
    assert result.optimizer_meta["param_groups"][0]["fused"] is opt.defaults["fused"]
    # Parameters on a device without a fused kernel (the meta device here) get the default implementation.
    assert not make_adam([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=1e-3).defaults["fused"]


def test_progress_gets_step_level_training_loss_before_the_first_epoch_ends(small):
    events = []
    torch.manual_seed(0)
    train(build_model("vae", latent_dim=4, hidden_dim=64), small.limit(1280), TrainConfig(epochs=2, batch_size=64),
          progress=events.append, report_every=3)
    steps = events[0].steps
    first_epoch = [e for e in events if e.epoch == 1 and e.stats is None]
    assert len(first_epoch) == steps // 3 and first_epoch[0].global_step == 3
    assert all(e.train_loss is not None and e.train_loss > 0 for e in first_epoch)
    assert [e.global_step for e in first_epoch] == list(range(3, steps + 1, 3))
    assert first_epoch[-1].train_loss < first_epoch[0].train_loss  # the curve moves within the epoch
    ends = [e for e in events if e.stats is not None]
    assert [e.global_step for e in ends] == [steps, 2 * steps]
    # The smoothed loss tracks the epoch's mean training loss (a moving average spans the last steps only).
    assert abs(ends[-1].train_loss - ends[-1].stats.train_loss) < 0.2 * ends[-1].stats.train_loss
    second = [e for e in events if e.epoch == 2 and e.stats is None]
    assert second[0].global_step == steps + 3


def test_global_step_counts_over_resumes(small):
    events = []
    train(build_model("ae", latent_dim=2), small.limit(256), TrainConfig(epochs=1, batch_size=64),
          progress=events.append, report_every=1, start_epoch=2)
    assert [e.global_step for e in events if e.stats is None] == [9, 10, 11, 12]
