"""prepare(): observation normaliser, reward transforms and Cal-QL's Monte-Carlo returns on the offline data."""

import pytest
import torch

from robot_learning.algos.base import make_algorithm
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "prep", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [2]}}, "action": {"dim": 1, "low": -1.0, "high": 1.0}})


def _data(reward: list[float], ends: list[int]) -> TransitionData:
    n = len(reward)
    return TransitionData(obs={"state": torch.arange(2 * n, dtype=torch.float32).view(n, 2)},
                          action=torch.zeros(n, 1), reward=torch.tensor(reward), terminal=torch.zeros(n, dtype=torch.bool),
                          episode_ends=torch.tensor(ends))


def test_calql_mc_returns_on_transformed_sparse_rewards():
    algo = make_algorithm("calql", {"reward_scale": 10.0, "reward_bias": -5.0, "sparse_failure_reward": 0.0}, SPEC)
    data = algo.prepare(_data([0.0, 0.0, 0.0, 0.0, 1.0], [3, 5]))
    torch.testing.assert_close(data.reward, torch.tensor([-5.0, -5.0, -5.0, -5.0, 5.0]))
    torch.testing.assert_close(data.mc_return, torch.tensor([-500.0, -500.0, -500.0, -5.0 + 0.99 * 5.0, 5.0]))
    assert data.sample(4).mc_return is not None
    torch.testing.assert_close(algo.transform_reward(torch.tensor([0.0, 1.0])), torch.tensor([-5.0, 5.0]))


def test_return_span_normalisation_applies_online_too():
    algo = make_algorithm("iql", {"reward_normalize_returns_to": 1000.0}, SPEC)
    data = algo.prepare(_data([1.0, 1.0, 0.5, 0.5], [2, 4]))  # returns 2 and 1: span 1
    torch.testing.assert_close(data.reward, torch.tensor([1000.0, 1000.0, 500.0, 500.0]))
    torch.testing.assert_close(algo.transform_reward(torch.tensor([0.1])), torch.tensor([100.0]))
    assert float(make_algorithm("iql", {}, SPEC).reward_gain) == 1.0
    with pytest.raises(Exception, match="return span"):
        algo.prepare(_data([1.0, 1.0], [1, 2]))


def test_normaliser_fitted_when_configured_and_frozen_in_state_dict():
    algo = make_algorithm("td3_bc", {}, SPEC)  # TD3+BC normalises observations
    algo.prepare(_data([0.0] * 4, [4]))
    torch.testing.assert_close(algo.encoder.normalizer.mean, torch.tensor([3.0, 4.0]))
    assert "encoder.normalizer.mean" in algo.state_dict()
    iql = make_algorithm("iql", {}, SPEC)  # official IQL does not normalise observations
    iql.prepare(_data([0.0] * 4, [4]))
    torch.testing.assert_close(iql.encoder.normalizer.mean, torch.zeros(2))
