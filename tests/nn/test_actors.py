"""Actors: log-probabilities against torch.distributions, shapes, bounds."""

import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from robot_learning.nn import DeterministicActor, GaussianActor, TanhGaussianActor


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    actor = TanhGaussianActor(5, 3, [16], log_std_offset=-1.0, log_std_min=-20.0)
    feats = torch.randn(64, 5)
    torch.manual_seed(1)
    action, log_prob = actor.sample(feats)
    mean, log_std = actor(feats)
    torch.manual_seed(1)
    u = mean + log_std.exp() * torch.randn_like(mean)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform(cache_size=1))
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, dist.log_prob(torch.tanh(u)).sum(-1), atol=1e-4, rtol=1e-4)


def test_tanh_gaussian_many_samples_share_the_network():
    actor = TanhGaussianActor(5, 2, [16])
    action, log_prob = actor.sample(torch.randn(7, 5), num_samples=4)
    assert action.shape == (7, 4, 2) and log_prob.shape == (7, 4)
    assert action.abs().max() <= 1.0
    assert actor.mode(torch.randn(7, 5)).shape == (7, 2)


def test_gaussian_actor_log_prob_and_bounds():
    actor = GaussianActor(5, 3, [16], tanh_mean=True, log_std_min=-5.0, log_std_max=2.0)
    feats, action = torch.randn(10, 5), torch.rand(10, 3) * 2 - 1
    mean, log_std = actor(feats)
    assert mean.abs().max() <= 1.0
    torch.testing.assert_close(actor.log_prob(feats, action), Normal(mean, log_std.exp()).log_prob(action).sum(-1))
    assert actor.sample(feats).abs().max() <= 1.0
    with torch.no_grad():
        actor.log_std.fill_(10.0)
    assert torch.all(actor(feats)[1] == 2.0)


def test_deterministic_actor_bounded():
    actor = DeterministicActor(5, 2, [16])
    out = actor(torch.randn(4, 5) * 100)
    assert out.shape == (4, 2) and out.abs().max() <= 1.0
