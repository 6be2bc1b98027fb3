"""On-policy rollouts: GAE against a per-step reference, truncation bootstrapping, collection from a real env."""

from __future__ import annotations

import numpy as np
import torch

from robot_learning.data.rollout import synthetic_rollout
from robot_learning.spec import TaskSpec
from robot_learning.train.envs import EnvRunner, EpisodeTracker, make_vector_env
from robot_learning.train.onpolicy import collect_rollout
from tests.helpers import toy_spec


def reference_gae(r, v, nv, term, trunc, gamma, lam):
    """GAE one env and one step at a time (the textbook recursion)."""
    adv = np.zeros_like(r)
    for e in range(r.shape[1]):
        following = 0.0
        for t in reversed(range(r.shape[0])):
            delta = r[t, e] + gamma * (0.0 if term[t, e] else nv[t, e]) - v[t, e]
            following = delta if (term[t, e] or trunc[t, e]) else delta + gamma * lam * following
            adv[t, e] = following
    return adv


def test_gae_matches_the_per_step_recursion_with_terminals_and_truncations():
    ro = synthetic_rollout(toy_spec(), num_steps=40, num_envs=3, seed=3)
    assert ro.terminal.any() and ro.truncated.any()
    ro.compute_gae(0.99, 0.95)
    expected = reference_gae(*(x.numpy() for x in (ro.reward, ro.value, ro.next_value, ro.terminal, ro.truncated)),
                             0.99, 0.95)
    assert np.allclose(ro.advantage.numpy(), expected, atol=1e-5)
    assert torch.allclose(ro.returns, ro.advantage + ro.value)


def test_flatten_and_take_keep_rows_aligned():
    ro = synthetic_rollout(toy_spec(), num_steps=5, num_envs=2, seed=0).compute_gae(0.9, 0.9)
    flat = ro.flatten()
    assert len(flat) == 10 and flat.obs["cam"].shape == (10, 16, 16, 3) and flat.obs["cam"].dtype == torch.uint8
    mb = flat.take(torch.tensor([3]))
    assert torch.equal(mb.action[0], ro.action[1, 1]) and mb.advantage[0] == ro.advantage[1, 1]


class ValueOfPosition:
    """A stand-in on-policy learner: constant action, V(s) = x position, so bootstraps can be checked."""

    def rollout_action(self, obs):
        n = obs["position"].shape[0]
        return torch.full((n, 2), 0.7), torch.zeros(n), self.predict_value(obs)

    def predict_value(self, obs):
        return obs["position"][:, 0].clone()

    def transform_reward(self, reward):
        return reward


def test_collection_bootstraps_truncated_steps_from_the_final_observation():
    base = TaskSpec.load("point_maze_umaze")
    spec = TaskSpec.from_dict({**base.to_dict(), "max_episode_steps": 4}, source="short maze")
    keys = ["position", "velocity"]
    runner = EnvRunner(make_vector_env(spec, 2, keys, seed=0), keys, torch.device("cpu"), spec)
    runner.reset(0)
    tracker = EpisodeTracker(2)
    ro, finished = collect_rollout(ValueOfPosition(), runner, 10, spec, tracker)
    runner.close()
    assert ro.truncated[3].all() and ro.truncated[7].all() and not ro.terminal.any()
    assert sum(len(f) for f in finished) == 4 and all((f.lengths == 4).all() for f in finished if len(f))
    # non-final steps bootstrap from the next step's value; truncated ones from V(final obs), which is not the
    # next stored observation (the new episode's first)
    assert torch.equal(ro.next_value[:3], ro.value[1:4])
    assert not torch.allclose(ro.next_value[3], ro.value[4])
    assert torch.allclose(ro.next_value[3], ro.obs["position"][3, :, 0], atol=0.6)  # one step of motion away
    assert torch.allclose(ro.obs["position"][4], ro.obs["position"][0], atol=0.25)  # restarted near the start
