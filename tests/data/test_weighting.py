"""Trajectory weights (RW, AW, Top-K) on a tiny dataset with hand-computed values, and the weighted sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robot_learning.config import ConfigError, compose
from robot_learning.data.tensors import TransitionData
from robot_learning.data.weighting import (OfflineSampler, advantage_weights, make_offline_sampler, return_weights,
                                           top_k_weights, trajectory_weights)
from robot_learning.train.run import Run
from tests.data.builders import task, write_store


def tiny() -> TransitionData:
    """Three episodes: returns 0, 3, 4; initial states 0, 1, 2; transitions (rows) 0 1 | 2 3 | 5 6.

    Episode 1 ends by time limit, so its last row (4) is no transition; its reward still counts in the return.
    """
    state = torch.tensor([[0.0], [9.0], [1.0], [9.0], [9.0], [2.0], [9.0]])
    return TransitionData(obs={"state": state}, action=torch.zeros(7, 1),
                          reward=torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0]),
                          terminal=torch.tensor([False, True, False, False, False, False, True]),
                          episode_ends=torch.tensor([2, 5, 7]))


def softmax(logits: list[float]) -> torch.Tensor:
    z = sum(math.exp(v) for v in logits)
    return torch.tensor([math.exp(v) / z for v in logits], dtype=torch.float64)


def test_rw_min_max_normalises_returns_then_softmaxes_over_transitions():
    data = tiny()
    assert data.valid.tolist() == [0, 1, 2, 3, 5, 6]
    # returns 0, 3, 4 -> min-max 0, 0.75, 1 -> logits / 0.1 per transition
    expected = softmax([0.0, 0.0, 7.5, 7.5, 10.0, 10.0])
    torch.testing.assert_close(return_weights(data, 0.1), expected)
    # the other orders give other weights: softmax of raw returns (d3rlpy-v2 wrapper) collapses on episode 2
    raw = softmax([0.0, 0.0, 30.0, 30.0, 40.0, 40.0])
    assert not torch.allclose(return_weights(data, 0.1), raw)


def test_aw_regresses_returns_on_initial_states():
    # G = 0, 3, 4 on s0 = 0, 1, 2: G ~ 2 s0 + 1/3 -> V = 1/3, 7/3, 13/3 -> A = -1/3, 2/3, -1/3 -> min-max 0, 1, 0
    expected = softmax([0.0, 0.0, 10.0, 10.0, 0.0, 0.0])
    torch.testing.assert_close(advantage_weights(tiny(), 0.1), expected)


def test_top_k_keeps_the_best_trajectories():
    torch.testing.assert_close(top_k_weights(tiny(), 0.34), torch.tensor([0, 0, 0, 0, 0.5, 0.5], dtype=torch.float64))
    # floor(3 * 0.1) = 0 trajectories: at least the best one is kept
    torch.testing.assert_close(top_k_weights(tiny(), 0.1), torch.tensor([0, 0, 0, 0, 0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(top_k_weights(tiny(), 0.7), torch.tensor([0, 0, 0.25, 0.25, 0.25, 0.25],
                                                                         dtype=torch.float64))


def test_equal_returns_give_uniform_weights():
    data = tiny()
    flat = TransitionData(data.obs, data.action, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]), data.terminal,
                          data.episode_ends)
    torch.testing.assert_close(return_weights(flat, 0.1), torch.full((6,), 1 / 6, dtype=torch.float64))


def test_sampler_draws_in_proportion_and_never_outside_the_support():
    data = tiny()
    weights = trajectory_weights(data, "rw", 0.5, 0.1)
    sampler = OfflineSampler(data, weights)
    batch = sampler.sample(60000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(batch.reward.long(), minlength=3).double() / 60000  # reward identifies the episode
    expected = torch.stack([weights[:2].sum(), weights[2:4].sum(), weights[4:].sum()])
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
    top = OfflineSampler(data, top_k_weights(data, 0.34)).sample(1000, generator=torch.Generator().manual_seed(1))
    assert bool((top.reward == 2.0).all())


def test_uniform_sampler_is_the_data_sampler():
    data = tiny()
    a = make_offline_sampler(data, "uniform").sample(8, generator=torch.Generator().manual_seed(3))
    b = data.sample(8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.obs["state"], b.obs["state"])


def test_default_temperature_follows_the_learner():
    data = tiny()
    torch.testing.assert_close(make_offline_sampler(data, "rw", algo="iql").weights, return_weights(data, 0.1))
    torch.testing.assert_close(make_offline_sampler(data, "rw", algo="cql").weights, return_weights(data, 0.2))


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="dataset.sampler"):
        trajectory_weights(tiny(), "per", 0.1, 0.1)
    with pytest.raises(ConfigError, match="sampler_temperature"):
        trajectory_weights(tiny(), "aw", 0.0, 0.1)
    with pytest.raises(ConfigError, match="sampler_top_fraction"):
        trajectory_weights(tiny(), "topk", 0.1, 1.5)


def test_training_runs_draw_offline_batches_with_the_configured_sampler(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [{"obs": {"state": rng.normal(size=(6, 2)).astype(np.float32)},
                 "action": rng.uniform(-1, 1, (6, 2)).astype(np.float32),
                 "reward": np.full(6, float(i), np.float32)} for i in range(4)]
    write_store(tmp_path / "d.zarr", task({"state": 2}), episodes).close()
    cfg = compose("train", ["algo=iql", "algo.hidden=[8]", "algo.batch_size=8", f"dataset.path={tmp_path / 'd.zarr'}",
                            "dataset.sampler=topk", "dataset.sampler_top_fraction=0.25", "train.offline_steps=3",
                            "eval.episodes=0", "train.progress=false", f"run_dir={tmp_path / 'run'}"])
    run = Run.create(cfg)
    batch = run.offline_sampler.sample(64, torch.Generator().manual_seed(0))
    assert bool((batch.reward == 3.0).all())  # only the best of the 4 episodes
    assert run.resolved["dataset"]["sampler"] == "topk"
    run.execute()
    assert run.state.offline_step == 3
