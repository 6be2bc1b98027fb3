"""Scripted maze expert: BFS over the cell grid to the next cell, PD control of the force towards it.

Aiming at the centre of the next cell on the shortest path keeps the straight line inside two
adjacent free cells, so the ball never cuts a wall corner; inside the goal's cell it aims at the goal
itself. Batched and stateless: a function of position, velocity and goal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robot_learning.spec import TaskSpec
from sim.tasks.maze import maze_layout

#: PD gains from position error (m) and velocity (m/s) to normalised force: saturates beyond ~0.35 m.
KP, KD = 3.0, 1.0


class MazeExpert:
    """Navigate to the maze's goal (or any free-cell position) along BFS shortest paths."""

    goal_directed = True

    def __init__(self, spec: TaskSpec):
        kwargs = dict((spec.env or {}).get("kwargs", {}))
        self.layout = maze_layout(kwargs["layout"], kwargs["cell_size"])
        self.goal_radius = float(kwargs["goal_radius"])
        self.goal_xy = self.layout.center(np.array(self.layout.goal))
        self.low, self.high = spec.action.low_array, spec.action.high_array

    def reset(self, obs: Mapping[str, np.ndarray]) -> None:
        """Nothing to reset: the expert is a function of the observation (and goal)."""

    def act(self, obs: Mapping[str, np.ndarray], goal: np.ndarray | None = None) -> np.ndarray:
        pos = np.asarray(obs["position"], np.float64)
        goal_xy = np.broadcast_to(self.goal_xy if goal is None else np.asarray(goal, np.float64), pos.shape)
        goal_cell = self.layout.cell_of(goal_xy)
        goal_index = self.layout.index_of(goal_cell)
        cell = self.layout.cell_of(pos)
        nxt = self.layout.next_cell(cell, goal_index)
        in_goal_cell = np.all(cell == goal_cell, axis=-1, keepdims=True)
        waypoint = np.where(in_goal_cell, goal_xy, self.layout.center(nxt))
        force = KP * (waypoint - pos) - KD * np.asarray(obs["velocity"], np.float64)
        return np.minimum(np.maximum(force, self.low), self.high).astype(np.float32)

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """The centre of a random free cell: the next waypoint of a wandering episode."""
        return self.layout.center(self.layout.free_cells[rng.integers(len(self.layout.free_cells))])

    def goal_reached(self, obs: Mapping[str, np.ndarray], goal: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(obs["position"]) - goal, axis=-1) < self.goal_radius
