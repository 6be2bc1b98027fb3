"""Online replay buffer and offline/online mixing: FIFO order, terminals vs truncations, MC returns, ratios."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_learning.data.replay import MixedSampler, ReplayBuffer
from robot_learning.data.tensors import TransitionData, discounted_return_to_go
from tests.helpers import toy_spec

SPEC = toy_spec()
KEYS = ["state", "cam"]


def step_rows(t: int, n: int):
    """Vector step ``t`` of ``n`` envs: obs encode (t, env) so rows can be traced."""
    state = torch.tensor([[t, e, 0.0] for e in range(n)])
    cam = torch.full((n, 16, 16, 3), t % 256, dtype=torch.uint8)
    nxt = torch.tensor([[t + 1, e, 0.0] for e in range(n)])
    return {"state": state, "cam": cam}, torch.full((n, 2), 0.5), np.full(n, float(t)), {"state": nxt, "cam": cam + 1}


def offline_data(n_episodes: int = 4, length: int = 10) -> TransitionData:
    n = n_episodes * length
    terminal = torch.zeros(n, dtype=torch.bool)
    terminal[length - 1::length] = True
    return TransitionData({"state": -torch.ones(n, 3), "cam": torch.zeros(n, 16, 16, 3, dtype=torch.uint8)},
                          torch.zeros(n, 2), -torch.ones(n), terminal, torch.arange(length, n + 1, length))


def test_fifo_wraps_and_keeps_the_newest_rows():
    buf = ReplayBuffer(SPEC, KEYS, capacity=5, num_envs=2)
    for t in range(4):
        obs, action, reward, nxt = step_rows(t, 2)
        buf.add(obs, action, reward, nxt, np.zeros(2, bool), np.zeros(2, bool))
    assert len(buf) == 5 and buf.added == 8
    stored = sorted(buf.column["obs/state"][:, 0].tolist())
    assert stored == [1.0, 2.0, 2.0, 3.0, 3.0]  # the three oldest rows (t=0, 0, 1) were overwritten
    assert torch.equal(buf.column["next_obs/state"][:, 0], buf.column["obs/state"][:, 0] + 1)
    assert buf.column["obs/cam"].dtype == torch.uint8


def test_only_true_terminals_are_done_and_rewards_go_through_the_transform():
    buf = ReplayBuffer(SPEC, KEYS, capacity=10, num_envs=2, reward_transform=lambda r: 10 * r - 5)
    obs, action, reward, nxt = step_rows(1, 2)
    buf.add(obs, action, reward, nxt, terminal=np.array([True, False]), episode_end=np.array([True, True]))
    batch = buf.rows(torch.arange(2))
    assert batch.done.tolist() == [1.0, 0.0]  # env 1 was truncated by the time limit: not a terminal
    assert batch.reward.tolist() == [5.0, 5.0]
    assert buf.column["reward"].tolist() == [1.0, 1.0]  # stored raw


def test_monte_carlo_returns_commit_whole_episodes_with_the_learners_function():
    gamma = 0.9
    seen = []

    def mc(episodes: TransitionData) -> torch.Tensor:
        seen.append(episodes.n_episodes)
        return torch.from_numpy(discounted_return_to_go(episodes.reward.numpy(), episodes.episode_ends.numpy(), gamma))

    buf = ReplayBuffer(SPEC, KEYS, capacity=100, num_envs=2, mc_returns=mc, reward_transform=lambda r: r * 2)
    ends = [(False, False), (True, False), (False, False), (False, True)]
    for t, (e0, e1) in enumerate(ends):
        obs, action, reward, nxt = step_rows(t, 2)
        buf.add(obs, action, reward, nxt, terminal=np.array([e0, False]), episode_end=np.array([e0, e1]))
        assert len(buf) == {0: 0, 1: 2, 2: 2, 3: 6}[t]  # staged until the episode ends
    assert seen == [1, 1]
    # env 0's episode (rewards 0, 1 -> transformed 0, 2): MC = [0 + 0.9 * 2, 2]
    rows = buf.column
    env0 = rows["obs/state"][:, 1] == 0
    first = env0 & (rows["obs/state"][:, 0] < 2)
    assert torch.allclose(rows["mc_return"][first], torch.tensor([1.8, 2.0]))
    # env 1's episode was a time-limit truncation at t=3: rewards 0..3 -> 0, 2, 4, 6
    env1 = rows["obs/state"][:, 1] == 1
    expected = discounted_return_to_go(np.array([0.0, 2.0, 4.0, 6.0]), np.array([4]), gamma)
    assert np.allclose(rows["mc_return"][env1].numpy(), expected)
    buf.end_episodes()  # env 0's second episode (t=2, 3) is closed, e.g. at a checkpoint
    assert len(buf) == 8 and buf.sample(16).mc_return is not None


def test_weight_hook_drives_sampling():
    buf = ReplayBuffer(SPEC, KEYS, capacity=10, num_envs=2,
                       weight_fn=lambda b: (b.column["obs/state"][:, 1] == 1).float())
    for t in range(3):
        obs, action, reward, nxt = step_rows(t, 2)
        buf.add(obs, action, reward, nxt, np.zeros(2, bool), np.zeros(2, bool))
    batch = buf.sample(200, torch.Generator().manual_seed(0))
    assert (batch.obs["state"][:, 1] == 1).all()


def mc_099(episodes: TransitionData) -> torch.Tensor:
    return episodes.compute_mc_returns(0.99)


def test_state_dict_round_trip_restores_rows_and_staging():
    buf = ReplayBuffer(SPEC, KEYS, capacity=7, num_envs=2, mc_returns=mc_099)
    for t in range(5):
        obs, action, reward, nxt = step_rows(t, 2)
        buf.add(obs, action, reward, nxt, np.zeros(2, bool), np.array([t == 2, False]))
    copy = ReplayBuffer(SPEC, KEYS, capacity=7, num_envs=2, mc_returns=mc_099)
    copy.load_state_dict(buf.state_dict())
    for b in (buf, copy):
        obs, action, reward, nxt = step_rows(9, 2)
        b.add(obs, action, reward, nxt, np.ones(2, bool), np.ones(2, bool))
    for name in buf.column:
        assert torch.equal(buf.column[name], copy.column[name]), name
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(SPEC, KEYS, capacity=8, num_envs=2, mc_returns=mc_099).load_state_dict(buf.state_dict())


def filled_buffer(rows: int = 40) -> ReplayBuffer:
    buf = ReplayBuffer(SPEC, KEYS, capacity=100, num_envs=2)
    for t in range(rows // 2):
        obs, action, reward, nxt = step_rows(t, 2)
        buf.add(obs, action, reward, nxt, np.zeros(2, bool), np.zeros(2, bool))
    return buf


def online_rows(batch) -> int:
    return int((batch.obs["state"][:, 0] >= 0).sum())


def test_mixed_ratio_gives_that_fraction_of_online_rows():
    sampler = MixedSampler(offline_data(), filled_buffer(), "mixed", online_ratio=0.25)
    gen, host = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    batch = sampler.sample(256, 0, gen, host)
    assert len(batch) == 256 and online_rows(batch) == 64
    assert batch.done[:192].sum() > 0  # offline rows first, with their terminals


def test_mixed_ratio_anneals_and_waits_for_online_data():
    gen, host = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    empty = ReplayBuffer(SPEC, KEYS, capacity=10, num_envs=2)
    assert online_rows(MixedSampler(offline_data(), empty, "mixed", 0.5).sample(64, 0, gen, host)) == 0
    sampler = MixedSampler(offline_data(), filled_buffer(), "mixed", 0.5, final_online_ratio=1.0, anneal_steps=100)
    assert [sampler.ratio_at(s) for s in (0, 50, 100, 1000)] == [0.5, 0.75, 1.0, 1.0]
    assert online_rows(sampler.sample(100, 50, gen, host)) == 75


def test_shared_mode_is_uniform_over_both_pools_and_fresh_drops_offline():
    gen, host = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    offline = offline_data(n_episodes=12, length=10)  # 120 offline transitions, 40 online rows
    shared = MixedSampler(offline, filled_buffer(40), "shared")
    frac = np.mean([online_rows(shared.sample(256, 0, gen, host)) / 256 for _ in range(40)])
    assert abs(frac - 40 / 160) < 0.02
    fresh = MixedSampler(offline, filled_buffer(40), "fresh")
    assert online_rows(fresh.sample(128, 0, gen, host)) == 128
    with pytest.raises(ValueError, match="expected offline data"):
        MixedSampler(None, filled_buffer(), "mixed")
