"""The lecture's models: layer shapes, parameter counts, the fixed bugs, one interface."""

import pytest
import torch

from vaedemo.models import REGISTRY, build_model, config_to_dict, kind_label, model_from_config


def test_ae_encoder_matches_notebook_summary():
    ae = build_model("ae")
    assert ae.latent_dim == 4
    assert sum(p.numel() for p in ae.encoder.parameters()) == 43_428
    # The notebook's summary: 8x14x14 → 16x7x7 → 32x3x3 → 288 → 128 → 4
    x = torch.rand(2, 1, 28, 28)
    h = x
    shapes = []
    for layer in ae.encoder.encoder_cnn:
        h = layer(h)
        if isinstance(layer, torch.nn.Conv2d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(8, 14, 14), (16, 7, 7), (32, 3, 3)]


def test_vae_parameter_count_matches_lecture():
    vae = build_model("vae")
    assert vae.latent_dim == 200
    assert vae.num_parameters() == 1_189_984


@pytest.mark.parametrize("kind", list(REGISTRY))
@pytest.mark.parametrize("latent", [1, 2, 7])
def test_every_model_round_trips_28x28(kind, latent):
    model = build_model(kind, latent_dim=latent).eval()
    x = torch.rand(5, 1, 28, 28)
    y = torch.arange(5)
    mu, logvar = model.encode(x, y)
    assert mu.shape == (5, latent)
    assert (logvar is None) == (kind in ("ae", "gan"))
    out = model.decode(mu, y)
    # Lecture bug: the middle ConvTranspose's output_padding=0 gave 26x26.
    assert out.shape == (5, 1, 28, 28)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    if model.implicit:  # a GAN has no ELBO: its loss refuses with a sentence
        with pytest.raises(ValueError, match="implicit model"):
            model.loss(x, y)
        return
    loss = model.loss(x, y)
    assert loss.total.ndim == 0 and torch.isfinite(loss.total)


def test_ae_outputs_are_not_stuck_above_half():
    # Lecture bug: ReLU before the sigmoid made every pixel >= 0.5; a black digit needs values near 0.
    torch.manual_seed(0)
    ae = build_model("ae").eval()
    with torch.no_grad():
        out = ae.decode(torch.randn(64, 4) * 3)
    assert float(out.min()) < 0.5


def test_vae_train_eval_flag_is_not_overridden():
    # Lecture bug: the encoder set self.training = True, so eval() could not turn sampling off.
    vae = build_model("vae", latent_dim=8).eval()
    assert not vae.Encoder.training
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        a, b = vae(x).x_hat, vae(x).x_hat
    assert torch.equal(a, b)  # deterministic at eval time: z is the mean
    vae.train()
    with torch.no_grad():
        assert not torch.equal(vae(x).z, vae(x).z)


def test_fc2_input_dim_is_used():
    ae = build_model("ae", hidden_dim=32)
    assert ae.encoder.encoder_lin[0].out_features == 32


def test_beta_weights_the_kl():
    torch.manual_seed(0)
    vae = build_model("vae", latent_dim=4, beta=4.0).train()
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    out = vae(x)
    assert torch.allclose(out.loss.total, out.loss.recon + 4.0 * out.loss.kl)


def test_cvae_needs_and_uses_labels():
    cvae = build_model("cvae", latent_dim=2).eval()
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="label"):
        cvae.decode(z)
    a = cvae.decode(z, torch.tensor([3]))
    b = cvae.decode(z, torch.tensor([8]))
    assert not torch.allclose(a, b)


def test_config_round_trips_through_json_dict():
    model = build_model("conv-vae", latent_dim=3, beta=2.5)
    again = model_from_config("conv-vae", config_to_dict(model.config))
    assert again.config == model.config


@pytest.mark.parametrize("bad", [0, -1, 2.5, float("nan"), "4", 10**9])
def test_silly_latent_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="latent_dim"):
        build_model("vae", latent_dim=bad)


def test_unknown_model_and_setting_are_refused():
    with pytest.raises(ValueError, match="Unknown model"):
        build_model("flow")
    with pytest.raises(ValueError, match="no setting"):
        build_model("ae", beta=2.0)


def test_prior_mmd_is_small_for_prior_draws_and_large_for_clustered_codes():
    from vaedemo.distributions import prior_mmd

    torch.manual_seed(0)
    matched = prior_mmd(torch.randn(256, 16))
    clustered = torch.randn(256, 16) * 0.1 + torch.randint(0, 2, (256, 1)) * 3.0  # two tight clumps
    assert abs(float(matched)) < 0.01
    assert float(prior_mmd(clustered)) > 50 * abs(float(matched)) + 0.1
    assert float(prior_mmd(torch.randn(1, 16))) == 0.0  # one code: nothing to compare, no NaN


def test_conv_models_take_channel_widths():
    model = build_model("conv-vae", latent_dim=16, channels=(16, 32, 64), hidden_dim=64)
    assert model.encoder.encoder_cnn[0].out_channels == 16 and model.decoder.decoder_cnn[-1].in_channels == 16
    assert model.decode(model.encode(torch.rand(2, 1, 28, 28))[0]).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="channels"):
        build_model("ae", channels=(8, 0, 32))


def test_mixture_prior_density_matches_torch_distributions():
    """The learnt prior's log p(z) (computed without an (N, K, D) tensor) is the mixture's density."""
    torch.manual_seed(0)
    model = build_model("vae", latent_dim=6, hidden_dim=32, prior_components=5)
    with torch.no_grad():
        model.prior.means.normal_(0, 2)
        model.prior.logvars.uniform_(-2, 1)
    dist = torch.distributions
    mixture = dist.MixtureSameFamily(
        dist.Categorical(torch.ones(5)),
        dist.Independent(dist.Normal(model.prior.means, (0.5 * model.prior.logvars).exp()), 1))
    z = torch.randn(3, 40, 6) * 3
    assert torch.allclose(model.log_prior(z), mixture.log_prob(z), atol=1e-3)
    assert model.log_prior(z).shape == (3, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training with --amp: the density stays float32
        assert torch.allclose(model.log_prior(z), mixture.log_prob(z), atol=1e-3)
    plain = build_model("vae", latent_dim=6, hidden_dim=32)
    assert plain.prior is None
    assert torch.allclose(plain.log_prior(z), dist.Normal(0, 1).log_prob(z).sum(-1), atol=1e-4)


@pytest.mark.parametrize("value", [-1, 1.5, True, 10**6])
def test_bad_prior_component_counts_are_refused(value):
    with pytest.raises(ValueError, match="prior_components"):
        build_model("vae", prior_components=value)


def test_mixture_prior_moments_are_the_mixtures():
    model = build_model("conv-vae", latent_dim=3, hidden_dim=16, prior_components=2)
    with torch.no_grad():
        model.prior.means.copy_(torch.tensor([[10.0, 0, 0], [-10.0, 0, 0]]))
        model.prior.logvars.fill_(-4.0)
    mean, std = model.prior.moments()
    assert abs(float(mean[0])) < 1e-5 and abs(float(std[0]) - 10) < 0.01


def test_every_kind_has_a_label_and_a_title():
    assert [kind_label(k) for k in ("ae", "vae", "conv-vae", "cvae", "gan")] == ["AE", "VAE", "Conv VAE", "CVAE",
                                                                                "GAN"]
    assert REGISTRY["vae"].title == "VAE (MLP, as in the lecture)" and REGISTRY["ae"].title == "Plain autoencoder (AE)"
    assert all(spec.label and spec.title for spec in REGISTRY.values())
    assert kind_label("flow") == "flow"  # an unknown kind is shown as it is
    assert [k for k, spec in REGISTRY.items() if spec.model_cls.implicit] == ["gan"]


def test_gan_config_round_trips_and_refuses_silly_settings():
    model = build_model("gan", latent_dim=6, g_channels=(12, 6), inversion_steps=5)
    again = model_from_config("gan", config_to_dict(model.config))
    assert again.config == model.config and isinstance(again.config.g_channels, tuple)
    for bad in ({"inversion_steps": -1}, {"ema": 1.5}, {"d_channels": (0, 4)}, {"inversion_lr": float("nan")}):
        with pytest.raises(ValueError):
            build_model("gan", **bad)
