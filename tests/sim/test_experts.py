"""Experts reach their success targets; progress increases along their trajectories."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from robot_learning.spec import TaskSpec
from sim.rollout import evaluate
from tests.sim.tasks import ARM_TASKS, LOCOMOTION_TASKS, MAZE_TASKS

#: task -> (episodes, minimum success rate of the noise-free expert). Measured: 100% on 200 episodes
#: of each (arm_push 99.5%), so these bounds leave room for platform differences without hiding a regression.
SUCCESS_TARGETS = {
    "arm_reach": (50, 0.95),
    "arm_push": (30, 0.80),
    "point_maze_umaze": (30, 0.95),
    "point_maze_medium": (30, 0.95),
    "point_maze_large": (10, 0.90),
}
#: task -> minimum mean return of the ARS expert over 2 episodes (the fitted experts score well above).
RETURN_TARGETS = {"halfcheetah": 3000.0, "hopper": 2000.0, "walker2d": 1000.0}


@pytest.mark.parametrize("task", sorted(SUCCESS_TARGETS))
def test_scripted_expert_success(task: str) -> None:
    episodes, target = SUCCESS_TARGETS[task]
    results = evaluate(task, sim.make_expert(task, seed=0), episodes, seed=0)
    rate = np.mean([r.success for r in results])
    assert rate >= target, f"{task}: expert success {rate:.2f} < {target}"


@pytest.mark.parametrize("task", LOCOMOTION_TASKS)
def test_locomotion_expert_return(task: str) -> None:
    results = evaluate(task, sim.make_expert(task), 2, seed=0)
    mean = np.mean([r.ret for r in results])
    assert mean >= RETURN_TARGETS[task], f"{task}: expert return {mean:.0f}"
    medium = np.mean([r.ret for r in evaluate(task, sim.make_expert(task, checkpoint="medium"), 2, seed=0)])
    assert medium < mean


def test_expert_is_batched() -> None:
    expert = sim.make_expert("arm_push")
    env = sim.make_env("arm_push", obs_keys=["ee_pos", "object_pos", "goal_pos"])
    obs = [env.reset(seed=s)[0] for s in range(4)]
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    actions = expert.act(batch)
    assert actions.shape == (4, 3) and actions.dtype == np.float32
    assert np.allclose(actions[2], expert.act(obs[2]))


def _expert_episode(task: str, seed: int) -> dict[str, np.ndarray]:
    spec = TaskSpec.load(task)
    env = sim.make_env(task, obs_keys=[k for k in spec.obs_keys if not spec.obs[k].is_image])
    expert = sim.make_expert(task)
    obs, _ = env.reset(seed=seed)
    rows = [obs]
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        rows.append(obs)
        done = terminated or truncated
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("task", ARM_TASKS + MAZE_TASKS)
def test_progress_increases_along_expert_trajectories(task: str) -> None:
    for seed in range(3):
        p = sim.progress(task, _expert_episode(task, seed))
        assert p[-1] > p[0] + 0.05
        # Mostly increasing: strongly rank-correlated with time (the push expert first walks around the puck).
        ranks = np.argsort(np.argsort(p))
        assert np.corrcoef(ranks, np.arange(len(p)))[0, 1] > 0.8, task


def test_progress_locomotion_is_forward_velocity() -> None:
    expert = _expert_episode("halfcheetah", 0)
    assert sim.progress("halfcheetah", expert).mean() > 2.0


def test_progress_checks_its_input() -> None:
    from robot_learning.spec import SpecError

    with pytest.raises(SpecError, match="target_pos"):
        sim.progress("arm_reach", {"ee_pos": np.zeros((4, 3), np.float32)})
