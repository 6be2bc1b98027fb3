"""Copy a store without some of its episodes (the input is never edited).

    robot-learning dataset drop-episodes data/maze.zarr episodes=[3,17] out=data/maze_clean.zarr

Kept episodes are copied unchanged (data, reward sources with provenance, meta) and renumbered in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.building import bulk_writer, check_output, copy_episodes, staged_store
from robot_learning.data.tools.common import console, load_config, require


@dataclass
class DropConfig:
    """configs/dataset_drop.yaml."""

    path: str | None = None
    episodes: list[int] = field(default_factory=list)
    out: str | None = None
    overwrite: bool = False


def drop_episodes(path: str | os.PathLike, episodes: Sequence[int], out: str | os.PathLike,
                  overwrite: bool = False) -> Path:
    """Write every episode of ``path`` except ``episodes`` to a new store at ``out``; returns ``out``."""
    out = check_output(out, [path], overwrite)
    src = EpisodeStore.open(path)
    drop = sorted({int(e) for e in episodes})
    bad = [e for e in drop if not 0 <= e < src.n_episodes]
    if bad:
        raise StoreError(f"{src.path}: episodes to drop: expected indices in [0, {src.n_episodes}), found {bad}")
    keep = [e for e in range(src.n_episodes) if e not in set(drop)]
    if not keep:
        raise StoreError(f"{src.path}: episodes to drop: expected at least one episode left, found all "
                         f"{src.n_episodes} dropped")
    source = f"{src.path} without episodes {drop}"
    with staged_store(out, src.spec, source=source, overwrite=overwrite, options=src.options) as dst:
        with bulk_writer(dst) as writer:
            copy_episodes(src, keep, writer, src.reward_sources)
        for name in src.reward_sources:
            if src.reward_provenance(name):
                dst.set_reward_provenance(name, src.reward_provenance(name))
    return out


def run(cfg: Any) -> int:
    """CLI entry: copy ``path`` without ``episodes`` to ``out``."""
    c = load_config(DropConfig, cfg, "dataset_drop")
    require(c.path, "path", "dataset_drop", "the store to copy from")
    require(c.episodes, "episodes", "dataset_drop", "a list of episode indices, e.g. episodes=[3,17]")
    require(c.out, "out", "dataset_drop", "the path of the new store")
    path = drop_episodes(c.path, c.episodes, c.out, c.overwrite)
    with EpisodeStore.open(path) as store:
        console().print(f"[green]wrote[/green] {path}: {store.n_episodes} episodes, {store.n_steps} steps "
                        f"(dropped {sorted(set(c.episodes))} of {c.path})")
    return 0
