"""H2O: its losses on hand-computed values, the real/sim row flags of the sampler, and that the discriminators
learn a dynamics gap (the harness covers the learner contract)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.h2o import (conservative_gap, discriminator_loss, dynamics_weight, gap_coefficient,
                                      log_dynamics_ratio, log_gap_weights, weighted_td_loss)
from robot_learning.data.replay import MixedSampler, ReplayBuffer
from robot_learning.data.tensors import Batch, TransitionData
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "gap", "text": "move", "control_hz": 10, "max_episode_steps": 20,
                           "observations": {"state": {"shape": [2]}}, "action": {"dim": 2, "low": -1.0, "high": 1.0}})


def test_log_ratio_from_discriminator_probabilities():
    # P_sa = softmax([0, log 3]) = [1/4, 3/4]; P_sas = softmax([log 4, 0]) = [4/5, 1/5]
    sa = torch.tensor([[0.0, math.log(3.0)]])
    sas = torch.tensor([[math.log(4.0), 0.0]])
    expected = math.log((0.8 / 0.2) / (0.25 / 0.75))  # log 12
    torch.testing.assert_close(log_dynamics_ratio(sa, sas), torch.tensor([expected]))


def test_dynamics_weight_is_clipped_ratio():
    log_ratio = torch.log(torch.tensor([12.0, 0.5, 1e-7]))
    torch.testing.assert_close(dynamics_weight(log_ratio, 1e-5, 1.0), torch.tensor([1.0, 0.5, 1e-5]))


def test_discriminator_loss_is_class_balanced_cross_entropy():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [0.0, math.log(4.0)]])  # P(real) = 3/4, 1/2, 1/5
    real, sim = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    l_sa, l_sas = discriminator_loss(logits, logits, real, sim)
    expected = -(math.log(0.75) + math.log(0.5)) / 2 - math.log(0.8)
    torch.testing.assert_close(l_sa, torch.tensor(expected))
    torch.testing.assert_close(l_sas, torch.tensor(expected))


def test_td_loss_weights_sim_rows_by_sqrt_w_inside_the_square():
    q = torch.tensor([[1.0, 2.0, 3.0, 5.0], [0.0, 2.0, 1.0, 1.0]])
    y = torch.tensor([0.0, 1.0, 1.0, 1.0])
    w = torch.tensor([1.0, 1.0, 0.25, 0.01])
    real, sim = torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    # critic 0: real (1 + 1)/2 = 1, sim (0.25*4 + 0.01*16)/2 = 0.58; critic 1: real (0 + 1)/2 = 0.5, sim (0 + 0)/2 = 0
    torch.testing.assert_close(weighted_td_loss(q, y, w, real, sim), torch.tensor(1.0 + 0.58 + 0.5))
    official = sum(F.mse_loss(q[i, :2], y[:2]) + F.mse_loss(w[2:].sqrt() * q[i, 2:], w[2:].sqrt() * y[2:])
                   for i in range(2))
    torch.testing.assert_close(weighted_td_loss(q, y, w, real, sim), official)


def test_gap_coefficient_is_clipped_mean_of_log_sim_over_real():
    log_real_over_sim = torch.tensor([[-1.0, -3.0], [1.0, 1.0], [-20.0, -30.0]])
    u = gap_coefficient(log_real_over_sim, 1e-45, 10.0)
    assert u.dtype == torch.float64
    torch.testing.assert_close(u, torch.tensor([2.0, 1e-45, 10.0], dtype=torch.float64))
    assert torch.isfinite(u.log()).all()  # the floor stays a normal number: log u = -103.6


def test_gap_weights_normalise_over_sim_rows_only():
    u = torch.tensor([5.0, 1.0, 3.0], dtype=torch.float64)
    sim = torch.tensor([0.0, 1.0, 1.0])
    log_omega = log_gap_weights(u, sim)
    torch.testing.assert_close(log_omega[1:].exp(), torch.tensor([0.25, 0.75]))


def test_conservative_term_on_hand_values():
    q = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    real, sim = torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    log_omega = torch.log(torch.tensor([1.0, 1.0, 0.25, 0.75]))  # real rows' values must not matter
    expected = math.log(0.25 * math.e ** 3 + 0.75 * math.e ** 4) - 1.5
    torch.testing.assert_close(conservative_gap(q, log_omega, real, sim, 1.0, -1000.0, 1000.0),
                               torch.tensor([expected]))
    # temperature T: T logsumexp((Q + log omega)/T)
    t = 2.0
    expected_t = t * math.log(math.exp((3.0 + math.log(0.25)) / t) + math.exp((4.0 + math.log(0.75)) / t)) - 1.5
    torch.testing.assert_close(conservative_gap(q, log_omega, real, sim, t, -1000.0, 1000.0), torch.tensor([expected_t]))
    # clipped difference
    torch.testing.assert_close(conservative_gap(q * 1e4, log_omega, real, sim, 1.0, -1000.0, 1000.0),
                               torch.tensor([1000.0]))


def test_conservative_term_without_sim_rows_is_zero_with_finite_gradients():
    q = torch.randn(2, 5, requires_grad=True)
    real, sim = torch.ones(5), torch.zeros(5)
    gap = conservative_gap(q, torch.zeros(5), real, sim, 1.0, -1000.0, 1000.0)
    assert torch.equal(gap, torch.zeros(2))
    gap.sum().backward()
    assert torch.isfinite(q.grad).all()


def _store(n_episodes: int = 6, gain: float = 1.0, seed: int = 0) -> TransitionData:
    """Episodes of s' = s + gain * a (real dynamics: gain 1)."""
    gen = torch.Generator().manual_seed(seed)
    length = SPEC.max_episode_steps
    states, actions = [], []
    for _ in range(n_episodes):
        s = torch.zeros(length, 2)
        a = torch.rand(length, 2, generator=gen) * 2 - 1
        for t in range(1, length):
            s[t] = s[t - 1] + gain * 0.1 * a[t - 1]
        states.append(s)
        actions.append(a)
    n = n_episodes * length
    return TransitionData({"state": torch.cat(states)}, torch.cat(actions), torch.zeros(n), torch.zeros(n, dtype=torch.bool),
                          torch.arange(1, n_episodes + 1) * length)


def test_sampler_flags_online_rows():
    buffer = ReplayBuffer(SPEC, ["state"], 100, 1)
    for _ in range(10):
        buffer.add({"state": torch.zeros(1, 2)}, torch.zeros(1, 2), [0.0], {"state": torch.ones(1, 2)}, [False], [False])
    sampler = MixedSampler(_store(), buffer, "mixed", online_ratio=0.25)
    batch = sampler.sample(8, 100, None, torch.Generator())
    assert batch.online.dtype == torch.bool and batch.online.tolist() == [False] * 6 + [True] * 2
    assert torch.equal(batch.next_obs["state"][batch.online], torch.ones(2, 2))


@pytest.mark.parametrize("gain", [3.0])
def test_discriminators_learn_the_dynamics_gap(gain):
    torch.manual_seed(0)
    algo = make_algorithm("h2o", {"policy_hidden": [32, 32], "qf_hidden": [32, 32], "discriminator_hidden": [64, 64],
                                  "discriminator_lr": 3e-3, "discriminator_noise_std": 0.01}, SPEC)
    real, sim = algo.prepare(_store(gain=1.0, seed=0)), _store(gain=gain, seed=1)
    gen = torch.Generator().manual_seed(0)

    def batch() -> Batch:
        r, s = real.sample(64, generator=gen), sim.sample(64, generator=gen)
        return Batch.cat([r.replace(online=torch.zeros(64, dtype=torch.bool)),
                          s.replace(online=torch.ones(64, dtype=torch.bool))])

    for _ in range(300):
        metrics = algo.update(batch())
    algo.check_finite()
    b = batch()
    s, a, s2 = b.obs["state"], algo.unit_action(b), b.next_obs["state"]
    weight, u, _ = algo.dynamics_terms(s, a, s2, (~b.online).float(), b.online.float())
    # sim transitions are recognised as unlike the real dynamics: TD weight well below 1, positive gap
    assert float(weight[b.online].mean()) < 0.5
    assert float(u[b.online].mean()) > 0.5
    assert float(metrics["d_sas_loss"]) < 0.5 * 2 * math.log(2.0)
