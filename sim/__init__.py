"""Simulation for robot-learning: MuJoCo tasks, scripted experts, datasets and dynamics gaps.

Data flow: ``configs/task/<name>.yaml`` (TaskSpec) -> :func:`make_env` (``sim/tasks``: arm, maze,
locomotion; ``sim/dynamics.py`` gaps; ``sim/render.py`` cameras) -> :func:`make_expert`
(``sim/experts``) and tiers (``sim/tiers.py``, ``configs/sim/tier``) -> :func:`generate_dataset`
(``sim/generate.py``) -> episode store. :func:`progress` (``sim/progress.py``) scores stored
observations for the oracle reward labeler.
"""

import robot_learning  # noqa: F401  (sets MuJoCo's headless OpenGL backend before mujoco is imported)
from sim.dynamics import Dynamics, available_dynamics
from sim.envs import make_env, make_vector_env
from sim.experts import make_expert
from sim.generate import generate_dataset
from sim.progress import progress
from sim.registry import register_all
from sim.tiers import available_tiers

register_all()

__all__ = ["Dynamics", "available_dynamics", "available_tiers", "generate_dataset", "make_env", "make_expert",
           "make_vector_env", "progress"]
