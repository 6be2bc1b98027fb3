"""Which code simulates each task: gymnasium ids, task families, experts and progress functions.

A task YAML names its gymnasium id (``env.id``); this table maps the id to the env class, the task
family (``arm``, ``maze``, ``locomotion``: what dataset tiers are specialised by), the scripted
expert and the ground-truth progress function. Entries are import strings, so ``import sim`` stays
light and registering costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from robot_learning.spec import TaskSpec
from sim.config import config_error


@dataclass(frozen=True)
class TaskKind:
    """The code behind one gymnasium id."""

    family: str
    entry_point: str
    expert: str
    progress: str


KINDS = {
    "sim/ArmReach-v0": TaskKind("arm", "sim.tasks.arm:ArmReachEnv", "sim.experts.arm:ReachExpert",
                                "sim.progress:reach_progress"),
    "sim/ArmPush-v0": TaskKind("arm", "sim.tasks.arm:ArmPushEnv", "sim.experts.arm:PushExpert",
                               "sim.progress:push_progress"),
    "sim/PointMaze-v0": TaskKind("maze", "sim.tasks.maze:PointMazeEnv", "sim.experts.maze:MazeExpert",
                                 "sim.progress:maze_progress"),
    "sim/Locomotion-v0": TaskKind("locomotion", "sim.tasks.locomotion:LocomotionEnv",
                                  "sim.experts.locomotion:LocomotionExpert", "sim.progress:locomotion_progress"),
}


def register_all() -> None:
    """Register every sim env id with gymnasium (idempotent)."""
    for env_id, kind in KINDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=kind.entry_point)


def load_spec(task: str | TaskSpec) -> TaskSpec:
    """The TaskSpec of a task name, YAML path or spec; it must name a simulated env."""
    spec = task if isinstance(task, TaskSpec) else TaskSpec.load(task)
    if spec.env is None or spec.env.get("id") not in KINDS:
        found = None if spec.env is None else spec.env.get("id")
        raise config_error(spec.source, "env.id", f"a simulated task, one of {sorted(KINDS)}", found)
    return spec


def task_kind(spec: TaskSpec) -> TaskKind:
    return KINDS[spec.env["id"]]


def env_kwargs(spec: TaskSpec) -> dict[str, Any]:
    """The env constructor arguments the task YAML gives (``env.kwargs``)."""
    return dict(spec.env.get("kwargs") or {})


def resolve(import_string: str) -> Any:
    """The object named ``module:attribute``."""
    module, attr = import_string.split(":")
    return getattr(importlib.import_module(module), attr)
