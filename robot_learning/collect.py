"""Record demonstrations over ROS 2: the simulated robot, a teleoperator and the recorder.

    robot-learning collect task=arm_reach teleop=scripted episodes=20 out=data/demo.zarr
    robot-learning collect task=arm_push teleop=scripted episodes=50 noise=0.3 out=data/push_mixed.zarr
    robot-learning collect task=arm_reach teleop=keyboard out=data/by_hand.zarr      # in a terminal; Ctrl-C ends

Runs ``launch/collect.launch.yaml`` through the launcher (the same file ``ros2 launch robot_learning
collect.launch.yaml`` runs on a full ROS install) and prints what this run added to the store:
episodes, success rate and the steps the recorder skipped because a stream was stale or malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.config import build, task_from_config
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.common import console, require
from robot_learning.launcher import launch

CONFIG = "collect"


@dataclass
class CollectConfig:
    """configs/collect.yaml (each key is documented there)."""

    task: dict[str, Any] | None = None
    teleop: str = "scripted"
    episodes: int = 10
    out: str | None = None
    noise: float = 0.0
    tier: str = ""
    seed: int = 0
    realtime: bool | None = None
    rate_hz: float = 0.0
    launch_file: str = "collect.launch.yaml"


def _episode_count(path: Path) -> int:
    if not path.exists():
        return 0
    with EpisodeStore.open(path) as store:
        return store.n_episodes


def run(cfg: Any) -> int:
    """CLI entry: run the collect launch, then summarise the new episodes."""
    c = build(CollectConfig, cfg, where=f"configs/{CONFIG}.yaml")
    spec = task_from_config(c.task)
    out = Path(require(c.out, "out", CONFIG, "the episode store to record into"))
    before = _episode_count(out)
    # Lock-step only works with the scripted teleop: it resets the robot and answers every observation; a
    # person at a keyboard or gamepad needs the robot running at its control rate.
    realtime = c.teleop != "scripted" if c.realtime is None else c.realtime
    arguments = {"task": spec.name, "teleop": c.teleop, "episodes": str(c.episodes), "out": str(out),
                 "noise": str(c.noise), "tier": c.tier, "seed": str(c.seed), "realtime": str(realtime).lower(),
                 "rate_hz": str(c.rate_hz)}
    code = launch(c.launch_file, arguments)
    summarise(out, before)
    return code


def summarise(out: Path, before: int) -> None:
    """Print the episodes after index ``before``: count, successes, steps and skipped steps."""
    con = console()
    if not out.exists():
        con.print(f"[red]no store was written at {out}[/red]")
        return
    with EpisodeStore.open(out) as store:
        new = range(before, store.n_episodes)
        meta = store.episode_meta()
        success = np.asarray(meta.get("success", np.zeros(store.n_episodes, bool)))[before:]
        dropped = np.asarray(meta.get("dropped_steps", np.zeros(store.n_episodes, int)))[before:]
        steps = int(store.episode_lengths[before:].sum())
        rate = f"{100 * success.mean():.0f}%" if len(new) else "n/a"
        con.print(f"[green]collected[/green] {len(new)} episodes into {out} ({store.n_episodes} in total): "
                  f"success rate {rate}, {steps} steps recorded, {int(dropped.sum())} dropped (stale or malformed "
                  "streams)")
