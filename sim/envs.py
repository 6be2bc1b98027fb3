"""Building environments for a task: one env, or a gymnasium vector env of them.

Every env is created from the task's TaskSpec (observation space, action limits, episode length,
env id and constructor arguments all come from ``configs/task/<name>.yaml``), optionally in a
dynamics-gap variant and with a subset of observation keys (skipping camera rendering entirely when
a policy reads low-dimensional keys only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import gymnasium as gym

from robot_learning.spec import TaskSpec
from sim.dynamics import Dynamics
from sim.registry import env_kwargs, load_spec, register_all


def make_env(task: str | TaskSpec, *, dynamics: Dynamics | Mapping[str, Any] | str | None = None,
             obs_keys: Sequence[str] | None = None, seed: int | None = None, max_episode_steps: int | None = None,
             **kwargs: Any) -> gym.Env:
    """A gymnasium env for ``task`` (name, YAML path or TaskSpec), time-limited to its episode length.

    ``dynamics`` is a preset name (``configs/sim/dynamics``) or a mapping of scales; ``obs_keys`` limits
    the observation dict to those keys; ``seed`` seeds the env's random stream (through a first
    ``reset``); ``max_episode_steps`` replaces the task's time limit (reset-free training chains many
    attempts in one episode and ends them itself); ``kwargs`` override the task YAML's ``env.kwargs``
    (e.g. ``reward="dense"``).
    """
    register_all()
    spec = load_spec(task)
    limit = spec.max_episode_steps if max_episode_steps is None else max_episode_steps
    env = gym.make(spec.env["id"], max_episode_steps=limit, task_spec=spec, dynamics=dynamics,
                   obs_keys=obs_keys, **{**env_kwargs(spec), **kwargs})
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vector_env(task: str | TaskSpec, num_envs: int, *, dynamics: Dynamics | Mapping[str, Any] | str | None = None,
                    obs_keys: Sequence[str] | None = None, seed: int = 0, asynchronous: bool = False,
                    max_episode_steps: int | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(task, ...)`` (env ``i`` seeded ``seed + i``), autoresetting.

    ``asynchronous`` runs each copy in its own process (worth it when a step is expensive, e.g. with
    camera rendering); otherwise they step in turn in this process. Worker processes are spawned, not
    forked: an EGL/OSMesa context does not survive a fork (the forked worker hangs on its first render).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs: expected a positive integer, found {num_envs}")
    spec = load_spec(task)
    fns = [partial(make_env, spec, dynamics=dynamics, obs_keys=obs_keys, seed=seed + i,
                   max_episode_steps=max_episode_steps, **kwargs)
           for i in range(num_envs)]
    return gym.vector.AsyncVectorEnv(fns, context="spawn") if asynchronous else gym.vector.SyncVectorEnv(fns)
