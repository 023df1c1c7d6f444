"""The Gaussian and prior math: reparameterisation, the one KL branch, the one prior sampler, the −ELBO."""

import math

import numpy as np
import pytest
import torch

from vaedemo import distributions as D
from vaedemo.models import build_model


def _mixture_at(model, means, logvar):
    with torch.no_grad():
        model.prior.means.copy_(torch.as_tensor(means, dtype=torch.float32))
        model.prior.logvars.fill_(logvar)
    return model


def test_reparameterize_with_eps_is_mu_plus_sigma_eps():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    eps = torch.randn(5, 3)
    z = D.reparameterize(mu, logvar, eps)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)
    torch.testing.assert_close(D.reparameterize(mu, logvar, eps), z)  # deterministic given eps
    assert D.reparameterize(mu, logvar, torch.randn(7, 1, 3)).shape == (7, 5, 3)  # S draws per image


def test_reparameterization_uses_sigma_not_variance():
    # Lecture bug: the notebook handed the standard deviation over under the name "var".
    torch.manual_seed(0)
    mu = torch.zeros(100_000, 1)
    logvar = torch.full((100_000, 1), 2 * math.log(3.0))  # sigma = 3, var = 9
    assert abs(float(D.reparameterize(mu, logvar).std()) - 3.0) < 0.05


def test_log_densities_match_torch_distributions():
    z, mu, logvar = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    ref = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(D.normal_logpdf(z, mu, logvar), ref)
    torch.testing.assert_close(D.standard_normal_logpdf(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                           torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(D.gaussian_kl(mu, logvar), kl)


def test_bernoulli_nll_and_its_gradient_match_torchs_cross_entropy():
    """The fast kernel gives torch's binary cross-entropy (the loss every model trains on) and its
    gradient, for saturated logits too, grey-level targets, bf16 logits and a broadcast target."""
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(6, 1, 28, 28, generator=g, dtype=torch.float64) * 4,
                        torch.full((1, 1, 28, 28), 80.0, dtype=torch.float64),
                        torch.full((1, 1, 28, 28), -80.0, dtype=torch.float64)])
    x = torch.rand(8, 1, 28, 28, generator=g, dtype=torch.float64)
    x[:3] = (x[:3] > 0.5).double()  # binarized digits and grey levels
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours = D.bernoulli_nll(a, x)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(b, x, reduction="none").flatten(1).sum(1)
    assert ours.shape == (8,) and torch.allclose(ours, theirs, rtol=1e-9, atol=1e-6)
    weights = torch.arange(1.0, 9.0, dtype=torch.float64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-9)
    assert torch.autograd.gradcheck(D.bernoulli_nll, (logits[:2, :, :4, :4].clone().requires_grad_(True),
                                                      x[:2, :, :4, :4].clone().requires_grad_(True)))
    # float32 and bf16 logits are scored in float32
    low = D.bernoulli_nll(logits.to(torch.bfloat16), x.float())
    assert low.dtype == torch.float32 and torch.allclose(low.double(), theirs, rtol=2e-2)
    # one target image against several logits (as IWAE's repeated draws use it)
    many = D.bernoulli_nll(logits.float(), x[:1].float())
    one = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), x[:1].float().expand(8, -1, -1, -1),
                                                               reduction="none").flatten(1).sum(1)
    assert torch.allclose(many, one, rtol=1e-5, atol=1e-3)


def test_kl_term_is_the_closed_form_under_a_standard_normal_prior():
    model = build_model("vae", latent_dim=4, hidden_dim=16)
    mu, logvar = torch.randn(8, 4), torch.randn(8, 4)
    expected = D.gaussian_kl(mu, logvar).sum(1)
    torch.testing.assert_close(D.kl_term(model, mu, logvar), expected)
    torch.testing.assert_close(D.kl_term(model, mu, logvar, torch.randn(3, 8, 4)), expected)  # draws unused
    ae = build_model("ae")
    assert torch.equal(D.kl_term(ae, torch.randn(8, 4), None), torch.zeros(8))


def test_kl_under_a_learnt_prior_is_an_unbiased_estimate():
    """With one component at N(0, I), the Monte Carlo KL averages to the closed form the plain VAE uses."""
    torch.manual_seed(0)
    model = _mixture_at(build_model("vae", latent_dim=4, hidden_dim=32, prior_components=1), [[0.0] * 4], 0.0)
    mu, logvar = torch.randn(4, 4), torch.randn(4, 4) - 1
    exact = D.gaussian_kl(mu, logvar).sum(1)
    z = D.reparameterize(mu, logvar, torch.randn(20_000, 4, 4))
    with torch.no_grad():
        estimate = D.kl_term(model, mu, logvar, z)
        one_draw = D.kl_term(model, mu, logvar)  # no draws given: one fresh draw
    assert estimate.shape == one_draw.shape == (4,)
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0.02)
    assert not torch.allclose(one_draw, exact)  # an estimate, not the closed form
    # The model's own loss goes through the same KL: its one-draw estimate averages to the same closed form.
    plain = build_model("vae", latent_dim=4, hidden_dim=32)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior.")})
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        closed = float(plain.loss(x).kl)
        estimates = torch.stack([model.loss(x).kl for _ in range(2000)])
    assert abs(float(estimates.mean()) - closed) < 0.05 * closed + 0.01
    assert float(estimates.std()) > 0


def test_prior_draws_are_repeatable_and_seeded():
    model = build_model("vae", latent_dim=5, hidden_dim=16)
    a = D.prior_draws(model, 32, seed=3)
    assert a.shape == (32, 5) and a.dtype == torch.float32
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(D.prior_draws(model, 32, seed=3), a)
    assert not torch.allclose(D.prior_draws(model, 32, seed=4), a)
    torch.testing.assert_close(D.prior_draws(model, 32, seed=3, temperature=0.5), 0.5 * a)
    torch.testing.assert_close(a, D.standard_normal((32, 5), 3))  # N(0, I): z = T eps, eps = standard_normal


def test_prior_draws_from_a_mixture_sit_on_its_components():
    model = _mixture_at(build_model("conv-vae", latent_dim=3, hidden_dim=16, prior_components=2),
                        [[10.0, 0, 0], [-10.0, 0, 0]], -4.0)
    z = D.prior_draws(model, 400, seed=1)
    assert torch.equal(D.prior_draws(model, 400, seed=1), z)
    assert not torch.equal(D.prior_draws(model, 400, seed=2), z)
    assert ((z[:, 0] - 10).abs() < 1).float().mean() > 0.3 and ((z[:, 0] + 10).abs() < 1).float().mean() > 0.3
    assert ((z[:, 0].abs() - 10).abs() < 1).all()  # every draw sits on a component, none in between
    cold = D.prior_draws(model, 50, seed=2, temperature=1e-6)  # T → 0: the centres themselves
    gaps = (cold[:, None] - model.prior.means[None]).abs().amax(-1)  # (50, 2)
    assert (gaps.min(1).values < 1e-4).all()
    # The same components at every temperature: T only scales each component's spread.
    warm = D.prior_draws(model, 50, seed=2, temperature=1.0)
    assert torch.equal(warm[:, 0] > 0, cold[:, 0] > 0)


def test_prior_draws_of_an_ae_need_its_code_gaussian():
    ae = build_model("ae")
    with pytest.raises(ValueError, match="no prior"):
        D.prior_draws(ae, 4, seed=0)
    mean, chol = np.arange(4.0), np.diag([1.0, 2.0, 3.0, 4.0])
    z = D.prior_draws(ae, 8, seed=5, temperature=0.5, code_gaussian=(mean, chol))
    eps = D.standard_normal((8, 4), 5).double().numpy()
    np.testing.assert_allclose(z.numpy(), mean + 0.5 * eps @ chol.T, rtol=1e-6)
    with pytest.raises(ValueError, match="code_gaussian"):
        D.prior_draws(ae, 4, seed=0, code_gaussian=(np.zeros(3), np.eye(3)))


def test_prior_draws_of_an_implicit_model_are_standard_normal():
    gan = build_model("gan", latent_dim=6)  # no variational posterior, no code_gaussian needed
    z = D.prior_draws(gan, 32, seed=3, temperature=0.7)
    torch.testing.assert_close(z, 0.7 * D.standard_normal((32, 6), 3))  # N(0, T² I), as a VAE under N(0, I)
    assert torch.equal(D.prior_draws(gan, 32, seed=3, temperature=0.7), z)


def test_prior_draws_are_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    model = build_model("vae", latent_dim=8, hidden_dim=16, prior_components=4)
    expected = D.prior_draws(model, 64, seed=9)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: D.prior_draws(model, 64, seed=9), range(16)))
    assert all(torch.equal(r, expected) for r in results)


@pytest.mark.parametrize("components", [0, 3])
def test_neg_elbo_agrees_with_evaluate(components):
    from vaedemo.metrics import evaluate

    torch.manual_seed(0)
    model = build_model("vae", latent_dim=4, hidden_dim=32, prior_components=components).eval()
    images = (np.random.default_rng(0).random((200, 28, 28)) < 0.2).astype(np.uint8) * 255
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    eps = D.standard_normal((64, 1, 4), 0)
    with torch.no_grad():
        per_image = D.neg_elbo(model, x, eps=eps)
        again = D.neg_elbo(model, x, eps=eps)
    assert per_image.shape == (200,) and torch.equal(per_image, again)
    # The same draws for every image: an image's score does not depend on its batch-mates.
    torch.testing.assert_close(D.neg_elbo(model, x[:7], eps=eps), per_image[:7])
    reference = evaluate(model, images, iwae_k=0)["neg_elbo"]  # one draw per image, averaged over 200
    assert abs(float(per_image.mean()) - reference) < 0.01 * reference


def test_neg_elbo_of_a_cvae_uses_the_labels():
    model = build_model("cvae", latent_dim=3, hidden_dim=16).eval()
    x = torch.rand(4, 1, 28, 28)
    eps = D.standard_normal((5, 1, 3), 0)
    with torch.no_grad():
        threes = D.neg_elbo(model, x, torch.tensor([3]), eps=eps)  # one label for every image
        torch.testing.assert_close(threes, D.neg_elbo(model, x, torch.full((4,), 3), eps=eps))
        assert not torch.allclose(threes, D.neg_elbo(model, x, torch.full((4,), 8), eps=eps))
    with pytest.raises(ValueError, match="no ELBO"):
        D.neg_elbo(build_model("ae"), x, eps=eps)
