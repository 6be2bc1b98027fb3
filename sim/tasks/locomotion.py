"""gymnasium's MuJoCo locomotion tasks (HalfCheetah, Hopper, Walker2d v5) behind a TaskSpec.

The wrapped env is gymnasium's own (same reward, termination and reset noise), with its flat state
returned as ``{"state": float32}`` so every task has dict observations, and its model scaled by the
dynamics gap. There is no goal, so ``info["success"]`` is always False; ``sim.progress`` reports
forward velocity instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from robot_learning.spec import TaskSpec
from sim.config import config_error
from sim.dynamics import Dynamics, resolve_dynamics
from sim.tasks.base import observation_space, select_keys

#: Index of the forward (x) velocity in each task's state vector: qpos without x, then qvel.
FORWARD_VELOCITY_INDEX = {"HalfCheetah-v5": 8, "Hopper-v5": 5, "Walker2d-v5": 8}


class LocomotionEnv(gym.Env):
    """A gymnasium MuJoCo env with dict observations ``{"state": ...}`` and a dynamics gap."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, task_spec: TaskSpec, *, gym_id: str, dynamics: Dynamics | Mapping[str, Any] | str | None = None,
                 obs_keys: Sequence[str] | None = None, render_mode: str | None = None, **gym_kwargs: Any):
        if gym_id not in FORWARD_VELOCITY_INDEX:
            raise config_error(task_spec.source, "env.kwargs.gym_id", f"one of {sorted(FORWARD_VELOCITY_INDEX)}", gym_id)
        self.task_spec = task_spec
        self.dynamics = resolve_dynamics(dynamics)
        self.obs_keys = select_keys(task_spec, obs_keys)
        # The inner env without gymnasium's TimeLimit: make_env applies the TaskSpec's episode length.
        self._env = gym.make(gym_id, render_mode=render_mode, **gym_kwargs).unwrapped
        self.dynamics.apply(self._env.model)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": task_spec.control_hz}
        self.observation_space = observation_space(task_spec, self.obs_keys)
        self.action_space = gym.spaces.Box(task_spec.action.low_array, task_spec.action.high_array, dtype=np.float32)

    @property
    def model(self):
        return self._env.model

    @property
    def data(self):
        return self._env.data

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": state.astype(np.float32)} if self.obs_keys else {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        state, info = self._env.reset(seed=seed, options=options)
        return self._obs(state), {**info, "success": False}

    def step(self, action: np.ndarray):
        state, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float64))
        return self._obs(state), float(reward), terminated, truncated, {**info, "success": False}

    def render(self) -> np.ndarray | None:
        return self._env.render()

    def close(self) -> None:
        self._env.close()
