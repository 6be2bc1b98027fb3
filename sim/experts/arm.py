"""Scripted arm experts: proportional end-effector control towards waypoints, batched over envs.

Both experts read only the observation (no simulator state), so they run on any batch of
observations and behave the same on the real robot's recorded keys. They are goal-directed: the
task's own goal comes from the observation, and a different goal can be passed in (random goals for
the wandering episodes of the lower dataset tiers).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robot_learning.spec import TaskSpec
from sim.tasks.arm import PUCK_HALF_HEIGHT, push_distance, reach_distance, sample_annulus

#: Proportional gain from position error (m) to commanded fingertip velocity (m/s): 6 cm -> 0.3 m/s.
GAIN = 5.0
#: Fingertip radius and puck radius (m), from arm.xml / arm_push.xml.
TIP_RADIUS, PUCK_RADIUS = 0.02, 0.035
#: Fingertip height while pushing (puck centre height) and while moving over the puck (m).
PUSH_HEIGHT, HOVER_HEIGHT = PUCK_HALF_HEIGHT, 0.09
#: Extra gap (m) between fingertip and puck at the pre-push point behind the puck.
STANDOFF = 0.015
#: Pushing speed (m/s): below the 0.3 m/s limit so the puck stays in contact instead of being kicked.
PUSH_SPEED = 0.15
#: Lateral offset (m) from the push line beyond which the expert lifts and re-approaches.
MAX_LATERAL = 0.02
#: Distance (m) to the pre-push point at which the fingertip descends; height tolerance while low (m).
DESCEND_RADIUS, HEIGHT_TOLERANCE = 0.01, 0.015


def _limit(v: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    """Scale velocities (N, 3) down so no component exceeds the action limit, keeping direction."""
    scale = np.min(vmax / np.maximum(np.abs(v), 1e-9), axis=-1, keepdims=True)
    return v * np.minimum(scale, 1.0)


class _ArmExpert:
    goal_directed = True

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.kwargs = dict((spec.env or {}).get("kwargs", {}))
        self.vmax = spec.action.high_array.astype(np.float64)
        self.success_distance = float(self.kwargs["success_distance"])

    def reset(self, obs: Mapping[str, np.ndarray]) -> None:
        """Nothing to reset: the experts are functions of the observation (and goal)."""


class ReachExpert(_ArmExpert):
    """Move the fingertip straight to the target."""

    def act(self, obs: Mapping[str, np.ndarray], goal: np.ndarray | None = None) -> np.ndarray:
        target = obs["target_pos"] if goal is None else goal
        return _limit(GAIN * (np.asarray(target, np.float64) - obs["ee_pos"]), self.vmax).astype(np.float32)

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A random point of the target distribution: where a wandering fingertip goes next."""
        xy = sample_annulus(rng, self.kwargs["target_radius"], self.kwargs["target_angle"])
        return np.array([xy[0], xy[1], rng.uniform(*self.kwargs["target_height"])])

    def goal_reached(self, obs: Mapping[str, np.ndarray], goal: np.ndarray) -> np.ndarray:
        return reach_distance(obs["ee_pos"], goal) < self.success_distance


class PushExpert(_ArmExpert):
    """Go behind the puck (opposite the goal), lower, push along the line; re-approach when misaligned.

    Stateless: the phase follows from where the fingertip is relative to the puck-goal line.
    """

    def act(self, obs: Mapping[str, np.ndarray], goal: np.ndarray | None = None) -> np.ndarray:
        ee = np.asarray(obs["ee_pos"], np.float64)
        puck = np.asarray(obs["object_pos"], np.float64)[..., :2]
        goal_xy = np.asarray(obs["goal_pos"] if goal is None else goal, np.float64)[..., :2]
        line = goal_xy - puck
        u = line / np.maximum(np.linalg.norm(line, axis=-1, keepdims=True), 1e-9)
        rel = ee[..., :2] - puck
        along = np.sum(rel * u, axis=-1, keepdims=True)
        offset = rel - along * u
        lateral = np.linalg.norm(offset, axis=-1)
        behind = puck - u * (PUCK_RADIUS + TIP_RADIUS + STANDOFF)
        low = ee[..., 2] < PUSH_HEIGHT + HEIGHT_TOLERANCE
        pushing = low & (along[..., 0] < -0.5 * (PUCK_RADIUS + TIP_RADIUS)) & (lateral < MAX_LATERAL)
        at_behind = np.linalg.norm(ee[..., :2] - behind, axis=-1) < DESCEND_RADIUS
        high = ee[..., 2] > HOVER_HEIGHT - HEIGHT_TOLERANCE

        push_v = np.concatenate([PUSH_SPEED * u - GAIN * offset, GAIN * (PUSH_HEIGHT - ee[..., 2:])], axis=-1)
        descend = np.concatenate([behind, np.full_like(ee[..., 2:], PUSH_HEIGHT)], axis=-1)
        travel = np.concatenate([behind, np.full_like(ee[..., 2:], HOVER_HEIGHT)], axis=-1)
        rise = np.concatenate([ee[..., :2], np.full_like(ee[..., 2:], HOVER_HEIGHT)], axis=-1)
        waypoint = np.where(at_behind[..., None], descend, np.where(high[..., None], travel, rise))
        v = np.where(pushing[..., None], push_v, GAIN * (waypoint - ee))
        return _limit(v, self.vmax).astype(np.float32)

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A random goal position for the puck (where a wandering expert pushes it instead)."""
        xy = sample_annulus(rng, self.kwargs["goal_radius"], self.kwargs["goal_angle"])
        return np.array([xy[0], xy[1], 0.0])

    def goal_reached(self, obs: Mapping[str, np.ndarray], goal: np.ndarray) -> np.ndarray:
        return push_distance(obs["object_pos"], goal) < self.success_distance
