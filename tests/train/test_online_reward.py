"""Online rewards from the learned model that labelled the store (robot_learning/train/rewards.py).

A tiny success classifier is trained on camera frames of a small arm_reach store and relabels it; online
training on that reward source must render the camera for the model (the policy reads low-dim keys only),
reward each step with the model on the true next observation, store the raw reward and apply the learner's
transform when sampling; what cannot match the offline rewards is refused before any work.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from robot_learning.cli import main
from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore
from robot_learning.train import checkpoint as ckpt
from robot_learning.train.run import Run
from tests.train.conftest import TINY_IQL

QUICK = ["eval.episodes=0", "train.progress=false", "train.log_every=10"]
LOW_DIM = "algo.obs_keys=[joint_pos,joint_vel,ee_pos,target_pos]"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """(store relabelled by a tiny success classifier, its source name, the model directory)."""
    import sim
    from reward_models.nets import ConvConfig
    from reward_models.relabel import relabel
    from reward_models.success import SuccessClassifier, SuccessConfig

    root = tmp_path_factory.mktemp("online_reward")
    path = root / "reach.zarr"
    sim.generate_dataset("arm_reach", "noisy", 8, 0, path, progress_bar=False).close()
    with EpisodeStore.open(path) as store:
        cfg = SuccessConfig(conv=ConvConfig(channels=[4, 8], kernels=[5, 3], strides=[4, 2]), hidden=[8], epochs=2,
                            device="cpu", val_fraction=0.5)
        model_dir = SuccessClassifier.fit(cfg, store, None).save(root / "clf")
    source = relabel(path, model_dir, device="cpu")
    return path, source, model_dir


def run_of(tmp_path, *args: str) -> Run:
    """A tiny IQL run on arm_reach that reads low-dim observations only."""
    return Run.from_command_line("train", [*TINY_IQL, "task=arm_reach", LOW_DIM, *QUICK, f"run_dir={tmp_path / 'run'}",
                                           *args])


def test_model_rewards_online_steps_like_relabelling(labelled, tmp_path):
    from reward_models.model import load_model

    path, source, model_dir = labelled
    run = run_of(tmp_path, f"dataset={path}", f"dataset.reward={source}", "train.offline_steps=1",
                 "train.online_steps=4", "online.num_envs=2")
    try:
        runner = run.train_env()
        assert "front" in runner.obs_keys and "front" not in run.algo.obs_keys  # rendered for the model only
        model = load_model(model_dir, device="cpu")
        runner.reset(0)
        for _ in range(3):
            step = runner.step(np.zeros((2, 3), np.float32))
            expected = model({"front": step.next_obs["front"]})
            assert step.reward.dtype == np.float32
            np.testing.assert_array_equal(step.reward, expected.numpy())
        runner.close()
    finally:
        run.close()


def test_online_phase_stores_raw_model_rewards_and_transforms_them_when_sampled(labelled, tmp_path):
    path, source, _ = labelled
    run_dir = tmp_path / "run"
    assert main(["train", *TINY_IQL, "task=arm_reach", LOW_DIM, *QUICK, f"dataset={path}", f"dataset.reward={source}",
                 "train.offline_steps=2", "train.online_steps=12", "online.num_envs=2", "algo.reward_bias=-1.0",
                 f"run_dir={run_dir}"]) == 0
    final = ckpt.load(run_dir, map_location="cpu")
    raw = final["buffer"]["fifo"]["reward"]
    assert len(raw) == 12 and set(raw.unique().tolist()) <= {0.0, 1.0}  # raw classifier verdicts
    assert "obs/front" not in final["buffer"]["fifo"]  # the buffer keeps the learner's keys only
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["phases"]["online"]["steps"] == 12

    from robot_learning.data.replay import ReplayBuffer
    from robot_learning.spec import TaskSpec

    spec = TaskSpec.from_dict(final["task_spec"])
    keys = ["joint_pos", "joint_vel", "ee_pos", "target_pos"]
    buffer = ReplayBuffer(spec, keys, final["buffer"]["capacity"], 2, reward_transform=lambda r: r - 1.0)
    buffer.load_state_dict(final["buffer"])
    batch = buffer.rows(torch.arange(12))
    torch.testing.assert_close(batch.reward, raw - 1.0)  # the learner's transform after the model


def test_explicit_reward_model_for_simulator_labelled_data(labelled, tmp_path):
    path, _, model_dir = labelled
    run = run_of(tmp_path, f"dataset={path}", "dataset.reward=sparse", f"online.reward_model={model_dir}",
                 "train.offline_steps=1", "train.online_steps=2")
    try:
        assert run.online_reward.model is not None and run.online_reward.is_success_classifier
    finally:
        run.close()


def test_refuses_a_model_other_than_the_labeller(labelled, tmp_path):
    path, source, model_dir = labelled
    other = tmp_path / "other.zarr"
    shutil.copytree(path, other)
    with EpisodeStore.open(other, mode="a") as store:
        store.add_reward("success_clf_0badf00d", store.reward(source), {"model_dir": str(model_dir)})
        store.add_reward("vlm_pref_12345678", store.reward(source), {"labeler": "test"})
    with pytest.raises(ConfigError, match="expected the model that labelled reward source 'success_clf_0badf00d'"):
        run_of(tmp_path, f"dataset={other}", "dataset.reward=success_clf_0badf00d", "train.offline_steps=1",
               "train.online_steps=2")
    with pytest.raises(ConfigError, match="its provenance names no model directory"):
        run_of(tmp_path, f"dataset={other}", "dataset.reward=vlm_pref_12345678", "train.offline_steps=1",
               "train.online_steps=2")
    assert not (tmp_path / "run" / "checkpoints").exists()
