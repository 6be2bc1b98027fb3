"""Dynamics-gap variants: presets load, the model is scaled, and trajectories really change."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

import sim
from robot_learning.spec import SpecError, TaskSpec
from sim.dynamics import Dynamics, resolve_dynamics
from tests.sim.tasks import ALL_TASKS

#: (task pattern, preset) pairs where a gap cannot act: the maze is planar (no gravity), the reach
#: fingertip touches nothing (no friction).
NO_EFFECT = {("point_maze_*", "low_gravity"), ("point_maze_*", "high_gravity"), ("arm_reach", "low_friction")}
STEPS = 40


def _low_dim(task: str) -> list[str]:
    spec = TaskSpec.load(task)
    return [k for k in spec.obs_keys if not spec.obs[k].is_image]


def _trajectory(task: str, dynamics, actions: np.ndarray) -> np.ndarray:
    env = sim.make_env(task, dynamics=dynamics, obs_keys=_low_dim(task))
    obs, _ = env.reset(seed=0)
    states = []
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        states.append(np.concatenate([obs[k] for k in sorted(obs)]))
        if terminated or truncated:
            break
    return np.array(states)


def _expert_actions(task: str) -> np.ndarray:
    """Actions of the nominal expert (pushing makes contact, so friction matters), replayed under gaps."""
    env = sim.make_env(task, obs_keys=_low_dim(task))
    expert = sim.make_expert(task)
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(STEPS):
        actions.append(expert.act(obs))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            break
    return np.array(actions)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_gaps_change_the_trajectory(task: str) -> None:
    actions = _expert_actions(task)
    nominal = _trajectory(task, None, actions)
    assert np.array_equal(nominal, _trajectory(task, "nominal", actions))
    for preset in sim.available_dynamics():
        if preset == "nominal" or any(fnmatch.fnmatch(task, p) and preset == q for p, q in NO_EFFECT):
            continue
        gap = _trajectory(task, preset, actions)
        n = min(len(gap), len(nominal))
        assert len(gap) != len(nominal) or not np.allclose(gap[:n], nominal[:n], atol=1e-4), f"{task}/{preset}"


def test_dynamics_scale_the_model() -> None:
    nominal = sim.make_env("arm_push", obs_keys=["ee_pos"]).unwrapped.model
    gap = sim.make_env("arm_push", obs_keys=["ee_pos"], dynamics={"mass_scale": 2.0, "friction_scale": 0.5,
                                                                   "gravity_scale": 1.5,
                                                                   "actuator_gain_scale": 0.25}).unwrapped.model
    assert np.allclose(gap.body_mass, 2.0 * nominal.body_mass)
    assert np.allclose(gap.geom_friction, 0.5 * nominal.geom_friction)
    assert np.allclose(gap.opt.gravity, 1.5 * nominal.opt.gravity)
    assert np.allclose(gap.actuator_gainprm[:, 0], 0.25 * nominal.actuator_gainprm[:, 0])
    assert np.allclose(gap.actuator_biasprm[:, 1], 0.25 * nominal.actuator_biasprm[:, 1])


def test_presets_and_errors() -> None:
    assert resolve_dynamics("heavy") == Dynamics(mass_scale=2.0)
    assert resolve_dynamics(None).is_nominal
    with pytest.raises(SpecError, match="'mas_scale'"):
        sim.make_env("arm_reach", dynamics={"mas_scale": 2.0})
    with pytest.raises(SpecError, match="gravity_scale"):
        resolve_dynamics({"gravity_scale": -1})
    with pytest.raises(SpecError, match="no_such_preset"):
        resolve_dynamics("no_such_preset")
