"""FamO2O: the beta encoding, the balance policy and its losses on hand-computed values, and the phase switch."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.famo2o import BalancePolicy, BetaEncoding, balance_loss, balance_temperature_loss
from robot_learning.config import ConfigError
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "f", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [4]}}, "action": {"dim": 2, "low": -1.0, "high": 1.0}})


def _data(n: int = 40) -> TransitionData:
    gen = torch.Generator().manual_seed(0)
    return TransitionData(obs={"state": torch.randn(n, 4, generator=gen)},
                          action=torch.rand(n, 2, generator=gen) * 2 - 1,
                          reward=torch.randn(n, generator=gen), terminal=torch.zeros(n, dtype=torch.bool),
                          episode_ends=torch.tensor([n // 2, n]))


def test_beta_encoding_is_interleaved_sin_cos():
    # beta = 10, d = 6, n = 1e4: angles 10 / 1e4^(2i/6) = 10, 0.46415888, 0.02154435
    enc = BetaEncoding(6, 1e4)(torch.tensor([10.0, 0.0]))
    expected = torch.tensor([[-0.54402111, -0.83907153, 0.44767083, 0.89419843, 0.02154268, 0.99976793],
                             [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(enc, expected, atol=1e-6, rtol=1e-6)


def test_balance_policy_maps_squashed_samples_onto_the_range():
    policy = BalancePolicy(3, [8], low=8.0, high=14.0, log_std_min=-10.0, log_std_max=2.0, init="orthogonal")
    torch.testing.assert_close(policy.to_beta(torch.tensor([-1.0, 0.0, 1.0, 0.5])),
                               torch.tensor([8.0, 11.0, 14.0, 12.5]))
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.fill_(0.5)
    features = torch.randn(5, 3)
    torch.testing.assert_close(policy.mode(features), torch.full((5,), 8.0 + (math.tanh(0.5) + 1) / 2 * 6.0))
    beta, log_prob = policy.sample(features)
    assert beta.shape == log_prob.shape == (5,)
    assert bool(((beta > 8.0) & (beta < 14.0)).all())
    # log_prob is the density of the squashed x = tanh(u), u ~ N(0.5, 1) (log-std initialised at 0)
    x = (beta - 8.0) / 6.0 * 2.0 - 1.0
    reference = TransformedDistribution(Normal(torch.tensor(0.5), torch.tensor(1.0)), [TanhTransform()])
    torch.testing.assert_close(log_prob, reference.log_prob(x), atol=1e-4, rtol=1e-4)


def test_balance_policy_log_std_is_clipped_to_minus_ten():
    policy = BalancePolicy(3, [8], low=0.0, high=1.0, log_std_min=-10.0, log_std_max=2.0, init="orthogonal")
    with torch.no_grad():
        policy.log_std.fill_(-50.0)
    with torch.no_grad():
        beta, _ = policy.sample(torch.zeros(1000, 3))
    assert float(beta.std()) < 1e-3


def test_balance_losses_on_hand_values():
    alpha = torch.tensor(2.0, requires_grad=True)
    # L_b = mean(alpha log pi - q) = (2 * (-1) - 3 + 2 * (-3) - 1) / 2, alpha detached
    loss = balance_loss(alpha, torch.tensor([-1.0, -3.0]), torch.tensor([3.0, 1.0]))
    assert float(loss) == pytest.approx(-6.0)
    assert not loss.requires_grad  # alpha_b is trained by its own loss only
    # L_alpha = alpha (H - H_target), H = -mean(log pi) = 2, H_target = -0.5, alpha = e^0.5
    log_alpha = torch.tensor(0.5, requires_grad=True)
    temp = balance_temperature_loss(log_alpha, torch.tensor([-1.0, -3.0]), -0.5)
    assert float(temp.detach()) == pytest.approx(math.exp(0.5) * 2.5)
    temp.backward()
    assert float(log_alpha.grad) == pytest.approx(math.exp(0.5) * 2.5)  # d/dlog(alpha) = alpha (H - H_target)


def test_offline_beta_is_uniform_and_online_beta_comes_from_the_balance_policy():
    algo = make_algorithm("famo2o", {"beta_low": 8.0, "beta_high": 14.0}, SPEC)
    data = algo.prepare(_data())
    with torch.no_grad():
        algo.actor.balance.net[-1].weight.zero_()
        algo.actor.balance.net[-1].bias.fill_(6.0)  # squashed mean ~ 1: beta ~ 14
        algo.actor.balance.log_std.fill_(-10.0)
    batch = data.sample(1024, generator=torch.Generator().manual_seed(1))
    algo.begin_phase("offline")
    offline = algo.update(batch)
    assert float(offline["beta_mean"]) == pytest.approx(11.0, abs=0.2)
    algo.begin_phase("online")
    online = algo.update(batch)
    assert float(online["beta_mean"]) == pytest.approx(14.0, abs=0.05)


def test_balance_loss_does_not_train_the_universal_actor_or_the_critic():
    algo = make_algorithm("famo2o", {}, SPEC)
    batch = algo.prepare(_data()).sample(32)
    action = algo.unit_action(batch)
    _, q_target = algo.value_losses(batch, action)
    out = algo.family_losses(batch, action, q_target)
    out["balance_loss"].backward()
    assert all(p.grad is None for p in algo.actor.universal.parameters())
    assert all(p.grad is None for p in algo.critic.parameters())
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in algo.actor.balance.parameters())


def test_exported_actor_goes_through_the_balance_model():
    algo = make_algorithm("famo2o", {}, SPEC)
    obs = {"state": torch.randn(5, 4)}
    policy = algo.export_actor()
    features = algo.actor_encoder(obs)
    beta = algo.actor.balance.mode(features)
    manual = algo.actor.universal.mode(torch.cat([features, algo.actor.encoding(beta)], dim=-1))
    with torch.no_grad():
        torch.testing.assert_close(policy(obs), manual)
        algo.actor.balance.net[-1].bias.add_(3.0)  # another beta(s), another action
        assert not torch.allclose(algo.export_actor()(obs), policy(obs))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="deterministic_actor"):
        make_algorithm("famo2o", {"deterministic_actor": True}, SPEC)
    with pytest.raises(ConfigError, match="beta_low/beta_high"):
        make_algorithm("famo2o", {"beta_low": 5.0, "beta_high": 1.0}, SPEC)
    with pytest.raises(ConfigError, match="beta_encoding_dim"):
        make_algorithm("famo2o", {"beta_encoding_dim": 5}, SPEC)
