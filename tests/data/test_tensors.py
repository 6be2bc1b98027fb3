"""Loading a store onto a device and sampling transitions/segments by index arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_learning.data.store import StoreError
from robot_learning.data.tensors import Batch, TransitionData, discounted_return_to_go
from tests.helpers import write_toy_store


@pytest.fixture
def data(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr", lengths=(5, 7, 4), terminal_last=(True, False, True))
    return store, TransitionData.from_store(store, device="cpu")


def test_transitions_follow_episode_boundaries(data):
    store, d = data
    # episode 1 (rows 5..11) ended without a terminal: its last row has no next observation
    assert d.n_steps == 16 and d.n_transitions == 15
    assert 11 not in d.valid.tolist() and {4, 15} <= set(d.valid.tolist())
    b = d.transitions(torch.tensor([0, 4, 10, 15]))
    state = torch.from_numpy(store.read("obs/state"))
    assert torch.equal(b.next_obs["state"][0], state[1])          # same episode: the next row
    assert torch.equal(b.next_obs["state"][2], state[11])
    assert b.done.tolist() == [0.0, 1.0, 0.0, 1.0]                 # terminals end the bootstrap
    assert torch.equal(b.action, torch.from_numpy(store.read("action"))[[0, 4, 10, 15]])


def test_uniform_sampling_covers_only_valid_rows(data):
    _, d = data
    g = torch.Generator().manual_seed(0)
    b = d.sample(4096, generator=g)
    assert isinstance(b, Batch) and len(b) == 4096 and b.obs["cam"].dtype == torch.uint8
    rows = {tuple(r) for r in b.action.tolist()}
    assert len(rows) == 15  # every transition drawn, the non-transition never


def test_segments_stay_inside_episodes(data):
    _, d = data
    starts = d.segment_starts(5)
    assert starts.tolist() == [0, 5, 6, 7]  # the 4-step episode is too short
    seg = d.sample_segments(64, 5, generator=torch.Generator().manual_seed(1))
    assert seg["action"].shape == (64, 5, 2) and seg["obs"]["cam"].shape == (64, 5, 16, 16, 3)


def test_selected_episodes_and_returns(data):
    store, _ = data
    d = TransitionData.from_store(store, episodes=[2, 0], obs_keys=["state"], device="cpu")
    assert d.n_steps == 9 and list(d.obs) == ["state"]
    rewards = store.reward("env")
    assert np.allclose(d.episode_returns().numpy(), [rewards[12:16].sum(), rewards[0:5].sum()], atol=1e-5)


def test_mc_returns_are_discounted_per_episode():
    g = discounted_return_to_go(np.array([1, 1, 1, 2, 2], np.float32), np.array([3, 5]), gamma=0.5)
    assert np.allclose(g, [1.75, 1.5, 1.0, 3.0, 2.0])


def test_unlabelled_rewards_are_an_error(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr")
    store.add_reward("pref", np.zeros(store.n_steps, np.float32), {"labeler": "test"})
    with store.writer() as w:
        from tests.helpers import toy_episode

        obs, actions, _ = toy_episode(3, 2)
        w.begin()
        for t in range(2):
            w.add_step(obs[t], actions[t], reward=0.0)
        w.end(success=False)
    with pytest.raises(StoreError, match=r"'pref': expected a label for every step, found 2 unlabelled step\(s\) in episode\(s\) \[3\]"):
        TransitionData.from_store(store, reward_source="pref", device="cpu")
    with pytest.raises(StoreError, match="observation key 'nope'"):
        TransitionData.from_store(store, obs_keys=["nope"], device="cpu")
