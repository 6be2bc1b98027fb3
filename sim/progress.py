"""Ground-truth task progress from stored low-dimensional observations (the oracle labeler's signal).

``progress(task, obs)`` takes a *batch* of observations (arrays with a leading axis, as read from an
episode store) and returns one float per row, higher meaning closer to done. It uses no simulator
state, only the stored keys, so it works on any dataset of the task; the VLM-reward stage's oracle
preference labeler compares these values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robot_learning.spec import TaskSpec
from sim.registry import env_kwargs, load_spec, resolve, task_kind
from sim.tasks.arm import push_cost, reach_distance
from sim.tasks.locomotion import FORWARD_VELOCITY_INDEX
from sim.tasks.maze import maze_layout


def progress(task: str | TaskSpec, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Progress of each row of ``obs`` (N, ...) on ``task``: float64 (N,), higher is better."""
    spec = load_spec(task)
    return resolve(task_kind(spec).progress)(spec, obs)


def _arrays(spec: TaskSpec, obs: Mapping[str, np.ndarray], *keys: str) -> list[np.ndarray]:
    spec.validate_observation(obs, batched=True, keys=keys, where=f"progress({spec.name!r}) observations")
    return [np.asarray(obs[k], dtype=np.float64) for k in keys]


def reach_progress(spec: TaskSpec, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Minus the fingertip-to-target distance (m)."""
    return -reach_distance(*_arrays(spec, obs, "ee_pos", "target_pos"))


def push_progress(spec: TaskSpec, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Minus the shaped push cost: puck-to-goal distance plus half the fingertip-to-puck distance (m)."""
    return -push_cost(*_arrays(spec, obs, "ee_pos", "object_pos", "goal_pos"))


def maze_progress(spec: TaskSpec, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Minus the shortest-path (geodesic) distance to the goal through the maze (m)."""
    kwargs = env_kwargs(spec)
    layout = maze_layout(kwargs["layout"], kwargs["cell_size"])
    (position,) = _arrays(spec, obs, "position")
    return -layout.geodesic(position, int(layout.index_of(np.array(layout.goal))))


def locomotion_progress(spec: TaskSpec, obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Forward velocity (m/s): the state has no x position, and running forward is the task."""
    (state,) = _arrays(spec, obs, "state")
    return state[:, FORWARD_VELOCITY_INDEX[env_kwargs(spec)["gym_id"]]]
