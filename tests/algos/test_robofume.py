"""RoboFuME: the backward task's reward, the backward learner (updates, checkpoints), prior + target stores, and
the reset-free schedule end to end on arm_reach (the harness covers the forward learner's contract)."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.robofume import RoboFuME, return_reward
from robot_learning.cli import main
from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore
from robot_learning.train import checkpoint as ckpt
from robot_learning.train.resolve import load_transitions
from tests.algos.test_harness import SPECS, _dataset
from tests.helpers import write_toy_store

RESET_FREE = {"enabled": True, "return_keys": ["state"], "return_tolerance": 0.5}
TINY = {"policy_hidden": [16, 16], "qf_hidden": [16, 16], "n_actions": 2}


def test_return_reward_sparse_and_dense():
    distance = torch.tensor([0.01, 0.05, 0.2])
    reward, success = return_reward(distance, 0.05, "sparse")
    assert torch.equal(reward, torch.tensor([1.0, 0.0, 0.0])) and success.tolist() == [True, False, False]
    reward, success = return_reward(distance, 0.1, "dense")
    assert torch.equal(reward, -distance) and success.tolist() == [True, True, False]


def test_backward_reward_measures_return_keys_against_the_start():
    algo = make_algorithm("robofume", {"obs_keys": ["state", "goal"], **TINY, "reset_free": RESET_FREE},
                          SPECS["vector"])
    start = {"state": torch.zeros(2, 5), "goal": torch.zeros(2, 2)}
    now = {"state": torch.tensor([[0.3, 0.4, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0, 0.0]]), "goal": torch.ones(2, 2) * 9}
    reward, returned = algo.backward_reward(now, start)  # distances 0.5 and 5.0 (tolerance 0.5: strict)
    assert returned.tolist() == [False, False] and torch.equal(reward, torch.zeros(2))
    reward, returned = algo.backward_reward({**now, "state": now["state"] * 0.5}, start)  # 0.25 and 2.5
    assert returned.tolist() == [True, False] and torch.equal(reward, torch.tensor([1.0, 0.0]))


def test_backward_learner_configuration():
    spec = SPECS["vector"]
    sparse = make_algorithm("robofume", {"obs_keys": ["state", "goal"], **TINY, "reset_free": RESET_FREE}, spec)
    assert sparse.backward.config.reward_scale == 10.0 and sparse.backward.config.sparse_failure_reward == 0.0
    assert sparse.backward.config.qf_hidden == [16, 16] and sparse.backward.name == "calql"
    dense = make_algorithm("robofume", {"obs_keys": ["state", "goal"], **TINY,
                                        "reset_free": {**RESET_FREE, "backward_reward": "dense"}}, spec)
    assert dense.backward.config.reward_scale == 1.0 and dense.backward.config.reward_bias == 0.0
    assert dense.backward.config.sparse_failure_reward is None
    assert make_algorithm("robofume", {"obs_keys": ["state"]}, spec).backward is None  # episodic by default
    with pytest.raises(ValueError, match="reset_free.return_keys: expected the low-dimensional keys"):
        make_algorithm("robofume", {"reset_free": {"enabled": True}}, spec)
    with pytest.raises(ConfigError, match="return_keys: expected low-dimensional keys"):
        make_algorithm("robofume", {"reset_free": {**RESET_FREE, "return_keys": ["cam"]}}, SPECS["image"])


def _round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("kind", ["vector", "image"])
def test_forward_and_backward_updates_resume_bit_identically(kind):
    spec = SPECS[kind]
    cfg = {"obs_keys": list(spec.obs_keys), **TINY, "normalize_obs": True,
           "reset_free": {**RESET_FREE, "return_keys": [spec.low_dim_keys[0]]}}
    algo: RoboFuME = make_algorithm("robofume", cfg, spec)
    data = algo.prepare(_dataset(spec))
    torch.testing.assert_close(algo.backward.encoder.normalizer.mean, algo.encoder.normalizer.mean)
    backward_data = algo.backward.prepare(_dataset(spec, seed=3))  # MC returns with the backward transform
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        metrics = algo.update(data.sample(8, generator=gen)) | algo.update_backward(backward_data.sample(8, generator=gen))
    assert all(torch.isfinite(v) for v in metrics.values()) and "backward_critic_loss" in metrics
    algo.check_finite()
    saved = _round_trip({"state_dict": algo.state_dict(), "training_state": algo.training_state()})
    fresh = make_algorithm("robofume", cfg, spec)
    fresh.load_state_dict(saved["state_dict"])
    fresh.load_training_state(saved["training_state"])
    batches = [(data.sample(8, generator=gen), backward_data.sample(8, generator=gen)) for _ in range(2)]
    for learner in (algo, fresh):
        torch.manual_seed(5)
        for forward, backward in copy.deepcopy(batches):
            learner.update(forward)
            learner.update_backward(backward)
    for key, value in algo.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    bad = batches[0][1].replace(reward=torch.full_like(batches[0][1].reward, float("nan")))
    algo.update_backward(bad)
    with pytest.raises(RuntimeError, match="calql: .*non-finite"):
        algo.check_finite()


def test_extra_stores_are_appended_with_their_episode_boundaries(tmp_path):
    prior = write_toy_store(tmp_path / "prior.zarr", lengths=(5, 7), terminal_last=(True, False))
    demos = write_toy_store(tmp_path / "demos.zarr", lengths=(4, 3, 6), terminal_last=(True, True, False))
    data = load_transitions([prior, demos], ["state"], "env", torch.device("cpu"))
    assert data.n_episodes == 5 and data.episode_ends.tolist() == [5, 12, 16, 19, 25]
    assert np.array_equal(data.obs["state"][12:].numpy(), demos.read("obs/state"))
    assert data.terminal.tolist()[15] and data.n_transitions == 25 - 2  # time-limit ends are not transitions
    assert "prior.zarr" in data.source and "demos.zarr" in data.source


@pytest.fixture(scope="module")
def reach_stores(tmp_path_factory):
    import sim

    root = tmp_path_factory.mktemp("robofume")
    sim.generate_dataset("arm_reach", "noisy", 6, 0, root / "prior.zarr", progress_bar=False).close()
    sim.generate_dataset("arm_reach", "expert", 2, 1, root / "demos.zarr", progress_bar=False).close()
    return root / "prior.zarr", root / "demos.zarr"


def test_reset_free_schedule_on_arm_reach(reach_stores, tmp_path):
    prior, demos = reach_stores
    run_dir = tmp_path / "rf"
    # one env, 5-step attempts, a hard reset after every 2 forward/backward pairs (20 steps), never on failure
    assert main(["train", "algo=robofume", "task=arm_reach", f"dataset={prior}", f"dataset.extra=[{demos}]",
                 "dataset.reward=sparse", "algo.policy_hidden=[16,16]", "algo.qf_hidden=[16,16]", "algo.batch_size=16",
                 "algo.n_actions=2", "algo.obs_keys=[joint_pos,joint_vel,ee_pos,target_pos]",
                 "algo.reset_free.enabled=true", "algo.reset_free.return_keys=[ee_pos]",
                 "algo.reset_free.return_tolerance=1e-6", "algo.reset_free.attempt_steps=5",
                 "algo.reset_free.attempts_per_reset=2", "algo.reset_free.reset_on_failure=false",
                 "train.offline_steps=2", "train.online_steps=40", "train.log_every=10", "eval.episodes=1",
                 "eval.num_envs=1", "eval.frames=0", "train.progress=false", f"run_dir={run_dir}"]) == 0
    final = ckpt.load(run_dir, map_location="cpu")
    forward, backward = final["buffer"]["fifo"], final["side_buffers"]["backward"]["fifo"]
    assert len(forward["reward"]) + len(backward["reward"]) == 40
    assert final["config"]["dataset"]["extra"] == [str(demos)]
    # the target is only moved by a hard reset: constant over each 20-step block, new in the next one
    targets = forward["obs/target_pos"]
    blocks = targets.reshape(-1, 10, 3) if len(targets) == 20 else None
    assert blocks is not None, "every attempt runs its 5 steps (the random policy never touches the target)"
    assert torch.equal(blocks[:, :1].expand_as(blocks), blocks) and not torch.equal(blocks[0, 0], blocks[1, 0])
    # no reset between attempts: each attempt starts where the previous one ended
    fwd_ee, bwd_ee = forward["obs/ee_pos"].reshape(4, 5, 3), backward["obs/ee_pos"].reshape(4, 5, 3)
    fwd_next, bwd_next = forward["next_obs/ee_pos"].reshape(4, 5, 3), backward["next_obs/ee_pos"].reshape(4, 5, 3)
    assert torch.equal(bwd_ee[:, 0], fwd_next[:, -1])  # backward starts where forward stopped
    assert torch.equal(fwd_ee[1, 0], bwd_next[0, -1]) and torch.equal(fwd_ee[3, 0], bwd_next[2, -1])
    assert not torch.equal(fwd_ee[2, 0], bwd_next[1, -1])  # a hard reset after the second pair
    assert torch.equal(backward["reward"], torch.zeros(20))  # never back within 1e-6 m
    with EpisodeStore.open(demos) as store:
        assert store.n_episodes == 2
