"""RIQL: quantile target, Huber as coded, clipped TD target on hand-computed values; normaliser, ensemble, defaults."""

from __future__ import annotations

import pytest
import torch

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.iql import cosine_lr
from robot_learning.algos.riql import clipped_td_target, huber_as_coded, huber_td_loss, quantile_target
from robot_learning.config import ConfigError
from robot_learning.data.tensors import TransitionData
from robot_learning.nn import DeterministicActor
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "r", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [3]}}, "action": {"dim": 2, "low": -1.0, "high": 1.0}})


def test_quantile_target_over_the_ensemble():
    # K = 5, alpha = 0.25: position 0.25 * 4 = 1 of the sorted values -> the second smallest
    q = torch.tensor([[5.0, 0.0], [1.0, 10.0], [4.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    torch.testing.assert_close(quantile_target(q, 0.25), torch.tensor([2.0, 10.0]))
    # K = 3, alpha = 0.25: position 0.5 -> halfway between the two smallest (linear interpolation)
    torch.testing.assert_close(quantile_target(torch.tensor([[3.0], [1.0], [2.0]]), 0.25), torch.tensor([1.5]))
    torch.testing.assert_close(quantile_target(q, 0.0), q.min(0).values)


def test_huber_as_coded_inverts_sigma():
    # sigma = 1 -> delta = 1: 0.5 x^2 inside, |x| - 0.5 outside
    torch.testing.assert_close(huber_as_coded(torch.tensor([0.5, -2.0]), 1.0), torch.tensor([0.125, 1.5]))
    # sigma = 2 -> delta = 1/4: a larger sigma gives a smaller quadratic zone
    torch.testing.assert_close(huber_as_coded(torch.tensor([0.2, 1.0]), 2.0), torch.tensor([0.08, 0.875]))
    # sigma = 0.1 -> delta = 100: quadratic zone up to 100, 0.5 x^2 / 100
    torch.testing.assert_close(huber_as_coded(torch.tensor([10.0]), 0.1), torch.tensor([0.5]))


def test_huber_td_loss_is_a_mean_over_members():
    q = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # (K=2, N=2)
    target = torch.tensor([0.5, 1.0])
    # errors 0.5, 0, -1.5, -2 -> 0.125, 0, 1.0, 1.5 (sigma 1); mean over the 4
    assert float(huber_td_loss(q, target, 1.0)) == pytest.approx((0.125 + 0.0 + 1.0 + 1.5) / 4)


def test_td_target_is_clipped():
    y = clipped_td_target(torch.tensor([2000.0, -500.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]), 0.99,
                          torch.tensor([10.0, 10.0, 10.0]), -100.0, 1000.0)
    torch.testing.assert_close(y, torch.tensor([1000.0, -100.0, 10.9]))


def test_defaults_ensemble_actor_and_init():
    algo = make_algorithm("riql", {}, SPEC)
    assert algo.critic.ensemble_size == 5 and algo.target_critic.ensemble_size == 5
    assert isinstance(algo.actor, DeterministicActor)
    hidden, output = algo.critic.net[0], algo.critic.net[-1]
    assert bool((hidden.bias == 0.1).all()) and float(output.weight.detach().abs().max()) <= 3e-3  # EDAC critic init
    critic_params = {id(p) for p in algo.critic.parameters()}
    assert critic_params == {id(p) for p in algo.optimizers["critic"].param_groups[0]["params"]}


def test_observations_are_normalised_with_dataset_statistics():
    algo = make_algorithm("riql", {}, SPEC)
    obs = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 4.0], [4.0, 1.0, 6.0]])
    data = TransitionData(obs={"state": obs}, action=torch.zeros(3, 2), reward=torch.zeros(3),
                          terminal=torch.tensor([False, False, True]), episode_ends=torch.tensor([3]))
    algo.prepare(data)
    torch.testing.assert_close(algo.encoder.normalizer.mean, torch.tensor([2.0, 1.0, 4.0]))
    std = (8.0 / 3.0) ** 0.5
    torch.testing.assert_close(algo.encoder.normalizer.std, torch.tensor([std + 1e-3, 1e-3, std + 1e-3]))


def test_update_steps_all_networks_with_a_cosine_actor_lr():
    algo = make_algorithm("riql", {"actor_lr_cosine_steps": 10, "num_critics": 3}, SPEC)
    gen = torch.Generator().manual_seed(0)
    n = 32
    data = algo.prepare(TransitionData(obs={"state": torch.randn(n, 3, generator=gen)}, action=torch.rand(n, 2) * 2 - 1,
                                       reward=torch.randn(n, generator=gen), terminal=torch.zeros(n, dtype=torch.bool),
                                       episode_ends=torch.tensor([n])))
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    for _ in range(5):
        metrics = algo.update(data.sample(16, generator=gen))
    assert {"value_loss", "actor_loss", "critic_loss", "q_target_std"} <= set(metrics)
    for prefix in ("value.", "actor.", "critic.", "target_critic."):
        assert any(not torch.equal(before[k], v) for k, v in algo.state_dict().items() if k.startswith(prefix)), prefix
    assert algo.optimizers["actor"].param_groups[0]["lr"] == pytest.approx(cosine_lr(3e-4, 4, 10))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="quantile"):
        make_algorithm("riql", {"quantile": 1.5}, SPEC)
    with pytest.raises(ConfigError, match="huber_sigma"):
        make_algorithm("riql", {"huber_sigma": 0.0}, SPEC)
    with pytest.raises(ConfigError, match="num_critics"):
        make_algorithm("riql", {"num_critics": 0}, SPEC)
