"""Dataset generation: roll out a tier's behaviour in a task and write the episodes to a store.

Episodes go through ``EpisodeStore.create(...).writer()``, the same writer the ROS recorder uses.
Arm and maze stores carry both reward sources (``dense`` and ``sparse``), locomotion stores ``env``;
``terminal`` marks true terminations only (success, or a fall), never the time limit. Every episode's
reset seed and the behaviour's random stream derive from ``seed``, so two runs with the same
arguments write identical data and metadata.

CLI: ``robot-learning dataset generate task=... tier=... episodes=N seed=S out=...`` calls :func:`run`
with ``configs/dataset_generate.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robot_learning.config import task_from_config
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec
from sim.config import config_error
from sim.dynamics import Dynamics, resolve_dynamics
from sim.envs import make_env
from sim.registry import load_spec, task_kind
from sim.rollout import episode_seeds, run_episode
from sim.tiers import TierPolicy, load_tier

log = logging.getLogger(__name__)


def generate_dataset(task: str | TaskSpec, tier: str, episodes: int, seed: int, out: str | Path, *,
                     dynamics: Dynamics | Mapping[str, Any] | str | None = None, progress_bar: bool = True,
                     overwrite: bool = False) -> EpisodeStore:
    """Write ``episodes`` episodes of ``tier`` behaviour in ``task`` to a new store at ``out``.

    ``dynamics`` (a preset name or mapping of scales) simulates a dynamics gap. Meta fields per
    episode: ``seed`` (its reset seed), ``tier``, ``policy`` (the behaviour that produced it),
    ``success``, ``return`` (under the task's default reward), ``dynamics`` and ``start_time``
    (simulated seconds since the first episode began).
    """
    spec = load_spec(task)
    behaviour = TierPolicy(spec, load_tier(tier, task_kind(spec).family), np.random.default_rng([seed, 1]))
    dyn = resolve_dynamics(dynamics)
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise config_error("generate_dataset", "episodes", "a positive integer", episodes)
    dyn_label = ",".join(f"{k}={v:g}" for k, v in vars(dyn).items() if v != 1.0) or "nominal"
    env = make_env(spec, dynamics=dyn)
    store = EpisodeStore.create(out, spec, overwrite=overwrite,
                                source=f"sim.generate_dataset(task={spec.name}, tier={tier}, episodes={episodes}, "
                                       f"seed={seed}, dynamics={dyn_label})")
    results, sim_time = [], 0.0
    try:
        with store.writer() as writer:
            for ep_seed in tqdm(episode_seeds(seed, episodes), desc=f"{spec.name}/{tier}", unit="ep",
                                disable=not progress_bar):
                result = run_episode(env, spec, behaviour, ep_seed, writer, tier=tier, dynamics=dyn_label,
                                     start_time=sim_time)
                sim_time += result.length * spec.dt
                results.append(result)
    finally:
        env.close()
    log.info("%s: %d episodes of %s/%s, success %.2f, mean return %.2f", out, episodes, spec.name, tier,
             np.mean([r.success for r in results]), np.mean([r.ret for r in results]))
    return store


def run(cfg: Mapping[str, Any]) -> None:
    """The ``robot-learning dataset generate`` verb (keys: ``configs/dataset_generate.yaml``)."""
    for key in ("task", "tier", "episodes", "seed", "out"):
        if cfg.get(key) in (None, "", "???"):
            raise config_error("dataset generate", key, "a value (e.g. key=value on the command line)", cfg.get(key))
    store = generate_dataset(task_from_config(cfg["task"]), str(cfg["tier"]), int(cfg["episodes"]), int(cfg["seed"]), cfg["out"],
                             dynamics=cfg.get("dynamics"), overwrite=bool(cfg.get("overwrite", False)))
    print(store)
