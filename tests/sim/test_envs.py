"""Every task's env: creation, reset, step and render, observations matching its TaskSpec."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from robot_learning.spec import SpecError, TaskSpec, available_tasks
from tests.sim.tasks import ALL_TASKS, ARM_TASKS, LOCOMOTION_TASKS, MAZE_TASKS


@pytest.mark.parametrize("task", ALL_TASKS)
def test_env_reset_step_matches_spec(task: str) -> None:
    spec = TaskSpec.load(task)
    env = sim.make_env(task, seed=0)
    obs, info = env.reset(seed=1)
    assert set(obs) == set(spec.obs_keys)
    spec.validate_observation(obs)
    assert isinstance(info["success"], bool)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(spec.action.low_array, spec.action.high_array))
        spec.validate_observation(obs)
        assert all(obs[k].dtype == (np.uint8 if spec.obs[k].is_image else np.float32) for k in obs)
        assert np.isfinite(reward) and isinstance(info["success"], bool)
        if task not in LOCOMOTION_TASKS:
            assert {"reward_dense", "reward_sparse"} <= set(info)
    assert env.spec.max_episode_steps == spec.max_episode_steps
    env.close()


def test_every_sim_task_yaml_is_tested() -> None:
    assert set(ALL_TASKS) <= set(available_tasks())


@pytest.mark.parametrize("task", ARM_TASKS)
def test_arm_camera_sees_the_scene(task: str) -> None:
    """The 64x64 camera image changes when the arm moves (the VLM path needs visible progress)."""
    env = sim.make_env(task, seed=0)
    first, _ = env.reset(seed=2)
    for _ in range(10):
        obs, *_ = env.step(np.array([0.0, 0.3, 0.3], dtype=np.float32))
    assert first["front"].shape == (64, 64, 3) and first["front"].std() > 10
    assert np.abs(obs["front"].astype(int) - first["front"].astype(int)).sum() > 1000
    env.close()


@pytest.mark.parametrize("task", ARM_TASKS + MAZE_TASKS + ("hopper",))
def test_render_rgb_array(task: str) -> None:
    env = sim.make_env(task, render_mode="rgb_array", obs_keys=[k for k in TaskSpec.load(task).obs_keys
                                                                if not TaskSpec.load(task).obs[k].is_image])
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.std() > 1
    env.close()


def test_low_dim_obs_keys_skip_rendering() -> None:
    env = sim.make_env("arm_reach", obs_keys=["ee_pos", "target_pos"], seed=0)
    obs, _ = env.reset()
    obs, *_ = env.step(np.zeros(3, np.float32))
    assert set(obs) == {"ee_pos", "target_pos"}
    assert env.unwrapped._cameras is None
    assert set(env.observation_space.spaces) == {"ee_pos", "target_pos"}


def test_reward_kinds_and_termination() -> None:
    dense = sim.make_env("point_maze_umaze", reward="dense", obs_keys=["position"])
    dense.reset(seed=0)
    _, r, _, _, info = dense.step(np.zeros(2, np.float32))
    assert r == info["reward_dense"] < 0
    env = sim.make_env("arm_reach", terminate_on_success=False, obs_keys=["ee_pos", "target_pos"])
    expert = sim.make_expert("arm_reach")
    obs, _ = env.reset(seed=0)
    successes = 0
    for _ in range(40):
        obs, r, terminated, _, info = env.step(expert.act(obs))
        assert not terminated
        successes += info["success"]
        assert r == float(info["success"])
    assert successes > 1


def test_seeded_resets_are_deterministic() -> None:
    a = sim.make_env("arm_push", obs_keys=["object_pos", "goal_pos"])
    b = sim.make_env("arm_push", obs_keys=["object_pos", "goal_pos"])
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    assert all(np.array_equal(oa[k], ob[k]) for k in oa)
    oc, _ = a.reset(seed=8)
    assert not np.array_equal(oa["goal_pos"], oc["goal_pos"])


def test_vector_env_autoresets_and_batches() -> None:
    venv = sim.make_vector_env("point_maze_umaze", 3, seed=0)
    obs, _ = venv.reset()
    assert obs["position"].shape == (3, 2) and obs["position"].dtype == np.float32
    expert = sim.make_expert("point_maze_umaze")
    done = np.zeros(3, bool)
    for _ in range(80):
        obs, reward, terminated, truncated, info = venv.step(expert.act(obs))
        done |= terminated
    assert done.all()
    venv.close()


def test_locomotion_control_rate_matches_env_dt() -> None:
    for task in LOCOMOTION_TASKS:
        env = sim.make_env(task)
        assert np.isclose(1.0 / TaskSpec.load(task).control_hz, env.unwrapped._env.dt)


def test_unknown_task_names_the_field() -> None:
    with pytest.raises(SpecError, match="no_such_task"):
        sim.make_env("no_such_task")
    with pytest.raises(SpecError, match="obs_keys"):
        sim.make_env("arm_reach", obs_keys=["nope"])
    with pytest.raises(SpecError, match="reward"):
        sim.make_env("arm_reach", reward="shaped")
