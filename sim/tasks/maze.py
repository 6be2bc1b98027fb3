"""Point-mass mazes in the style of D4RL maze2d/antmaze.

A maze is a character grid (``#`` wall, ``O`` free, ``S`` start, ``G`` goal) in the task YAML; walls
become boxes of ``cell_size``. The observation is the ball's position and velocity only: the
evaluation goal is fixed per maze (as in D4RL), so a dataset collected towards other goals teaches
a policy to reach this one only by *stitching* pieces of trajectories. Reward: sparse 1 on reaching
the goal (within ``goal_radius``, which ends the episode); dense: minus the Euclidean distance.

:class:`MazeLayout` also carries the cell graph (BFS distances between free cells), which the expert
navigates by and ``sim.progress`` measures geodesic distance with.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import mujoco
import numpy as np

from sim.config import config_error
from sim.tasks.base import MujocoTaskEnv

WALL, FREE, START, GOAL = "#", "O", "S", "G"
#: Height of the wall boxes (m); the ball (radius 0.1) rolls at z = 0.1.
WALL_HEIGHT = 0.4
WALL_RGBA = (0.45, 0.45, 0.55, 1.0)
#: Field of view of the top-down view camera (degrees).
TOP_CAMERA_FOVY = 45.0
#: The 4-neighbourhood moves of the cell graph (row, column).
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


@dataclass(frozen=True, eq=False)
class MazeLayout:
    """A parsed maze: wall mask, start and goal cells, cell size and all-pairs BFS distances."""

    walls: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]
    cell_size: float
    free_cells: np.ndarray = field(repr=False)
    #: distance[k] is the (rows, cols) grid of step counts from free cell k (inf for walls/unreachable).
    distance: np.ndarray = field(repr=False)
    #: index_grid[row, col] is the free cell's index in ``free_cells`` (-1 for walls).
    index_grid: np.ndarray = field(repr=False)
    #: next_cells[k, row, col] is the neighbour (row, col) one BFS step closer to free cell k.
    next_cells: np.ndarray = field(repr=False)

    @classmethod
    def parse(cls, rows: Sequence[str], cell_size: float, where: str = "layout") -> MazeLayout:
        rows = [str(r) for r in rows]
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise config_error(where, "layout", "a non-empty list of equally long strings", rows)
        bad = sorted({c for r in rows for c in r} - {WALL, FREE, START, GOAL})
        if bad:
            raise config_error(where, "layout", f"only the characters '{WALL}{FREE}{START}{GOAL}'", bad[0])
        grid = np.array([list(r) for r in rows])
        marks = {}
        for mark in (START, GOAL):
            found = np.argwhere(grid == mark)
            if len(found) != 1:
                raise config_error(where, "layout", f"exactly one '{mark}' cell", f"{len(found)}")
            marks[mark] = (int(found[0][0]), int(found[0][1]))
        walls = grid == WALL
        free = np.argwhere(~walls)
        distance = np.stack([_bfs(walls, (int(r), int(c))) for r, c in free])
        index_grid = np.full(walls.shape, -1, dtype=np.int64)
        index_grid[free[:, 0], free[:, 1]] = np.arange(len(free))
        return cls(walls, marks[START], marks[GOAL], float(cell_size), free, distance, index_grid,
                   _descent(distance))

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    def center(self, cells: np.ndarray) -> np.ndarray:
        """World (x, y) of cell centres; ``cells`` (..., 2) as (row, col). Row 0 is the top (+y)."""
        rows, cols = self.shape
        cells = np.asarray(cells, dtype=np.float64)
        x = (cells[..., 1] - (cols - 1) / 2) * self.cell_size
        y = ((rows - 1) / 2 - cells[..., 0]) * self.cell_size
        return np.stack([x, y], axis=-1)

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """(row, col) of the cell containing each position; ``xy`` (..., 2)."""
        rows, cols = self.shape
        xy = np.asarray(xy, dtype=np.float64)
        col = np.floor(xy[..., 0] / self.cell_size + cols / 2).astype(np.int64)
        row = np.floor(rows / 2 - xy[..., 1] / self.cell_size).astype(np.int64)
        return np.stack([np.minimum(np.maximum(row, 0), rows - 1), np.minimum(np.maximum(col, 0), cols - 1)], axis=-1)

    def index_of(self, cells: np.ndarray) -> np.ndarray:
        """Index in ``free_cells`` of each free cell; ``cells`` (..., 2) as (row, col)."""
        cells = np.asarray(cells)
        return self.index_grid[cells[..., 0], cells[..., 1]]

    def next_cell(self, cells: np.ndarray, goal_index: np.ndarray) -> np.ndarray:
        """For each cell, the neighbour one step closer to the goal (the goal cell maps to itself)."""
        cells = np.asarray(cells)
        return self.next_cells[goal_index, cells[..., 0], cells[..., 1]]

    def geodesic(self, xy: np.ndarray, goal_index: int) -> np.ndarray:
        """Path length (m) from positions ``xy`` (..., 2) to the centre of free cell ``goal_index``.

        Cells of the BFS path to the next cell's centre, plus the straight line to it; inside the
        goal cell the straight line to the goal.
        """
        cells = self.cell_of(xy)
        nxt = self.next_cell(cells, np.asarray(goal_index))
        steps = self.distance[goal_index, nxt[..., 0], nxt[..., 1]]
        return steps * self.cell_size + np.linalg.norm(np.asarray(xy) - self.center(nxt), axis=-1)


def _bfs(walls: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    dist = np.full(walls.shape, np.inf)
    dist[source] = 0
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < walls.shape[0] and 0 <= nc < walls.shape[1] and not walls[nr, nc] and dist[nr, nc] == np.inf:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def _descent(distance: np.ndarray) -> np.ndarray:
    """For every goal k and cell, the 4-neighbour with the smallest BFS distance to k (or the cell itself)."""
    k, rows, cols = distance.shape
    padded = np.pad(distance, ((0, 0), (1, 1), (1, 1)), constant_values=np.inf)
    grid = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), axis=-1)
    best = np.broadcast_to(grid, (k, rows, cols, 2)).copy()
    best_d = distance.copy()
    for dr, dc in MOVES:
        d = padded[:, 1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
        better = d < best_d
        best[better] = (grid + np.array([dr, dc]))[np.broadcast_to(better, (k, rows, cols)).nonzero()[1:]]
        best_d = np.where(better, d, best_d)
    return best


@cache
def _layout(rows: tuple[str, ...], cell_size: float) -> MazeLayout:
    return MazeLayout.parse(rows, cell_size)


def maze_layout(rows: Sequence[str], cell_size: float) -> MazeLayout:
    """The (cached) parsed layout of a maze: env, expert and progress share one per maze."""
    return _layout(tuple(rows), float(cell_size))


class PointMazeEnv(MujocoTaskEnv):
    """Navigate a point mass from the start cell to the fixed goal cell of a maze."""

    asset = "point_maze.xml"
    view_camera = "top"

    def __init__(self, task_spec, *, layout: Sequence[str], cell_size: float, start_noise: float,
                 goal_radius: float, **kwargs):
        self.layout = maze_layout(layout, cell_size)
        self.start_noise = float(start_noise)
        self.goal_radius = float(goal_radius)
        self.goal_xy = self.layout.center(np.array(self.layout.goal))
        super().__init__(task_spec, **kwargs)
        m = self.model
        self._q = slice(int(m.joint("ball_x").qposadr[0]), int(m.joint("ball_y").qposadr[0]) + 1)
        self._dq = slice(int(m.joint("ball_x").dofadr[0]), int(m.joint("ball_y").dofadr[0]) + 1)
        self._ctrl = slice(int(m.actuator("force_x").id), int(m.actuator("force_y").id) + 1)
        self._goal_mocap = int(m.body("goal").mocapid[0])

    def _edit_model(self, mj_spec: mujoco.MjSpec) -> None:
        size = self.layout.cell_size
        for k, (r, c) in enumerate(np.argwhere(self.layout.walls)):
            x, y = self.layout.center(np.array([r, c]))
            mj_spec.worldbody.add_geom(name=f"wall_{k}", type=mujoco.mjtGeom.mjGEOM_BOX,
                                       size=[size / 2, size / 2, WALL_HEIGHT / 2], pos=[x, y, WALL_HEIGHT / 2],
                                       rgba=list(WALL_RGBA))
        extent = max(self.layout.shape) * size
        height = extent / (2 * np.tan(np.radians(TOP_CAMERA_FOVY) / 2)) + WALL_HEIGHT
        mj_spec.worldbody.add_camera(name="top", pos=[0, 0, height], fovy=TOP_CAMERA_FOVY)

    def _low_dim_observers(self) -> dict[str, Callable[[], np.ndarray]]:
        return {"position": lambda: self.data.qpos[self._q], "velocity": lambda: self.data.qvel[self._dq]}

    def _reset_task(self) -> None:
        start = self.layout.center(np.array(self.layout.start))
        self.data.qpos[self._q] = start + self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        self.data.mocap_pos[self._goal_mocap, :2] = self.goal_xy

    def _apply_action(self, action: np.ndarray) -> None:
        self.data.ctrl[self._ctrl] = action

    def _evaluate(self) -> tuple[float, bool]:
        d = float(np.linalg.norm(self.data.qpos[self._q] - self.goal_xy))
        return -d, d < self.goal_radius
