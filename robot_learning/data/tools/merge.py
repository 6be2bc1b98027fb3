"""Merge stores of the same task into a new store.

    robot-learning dataset merge inputs=[a.zarr,b.zarr] out=merged.zarr

The inputs must share the task interface (observation keys, shapes and dtypes, action dim and limits,
control rate). Episodes keep their order (all of ``a``, then all of ``b``), their data and their meta, plus
a ``source_store`` field naming the input they came from (kept if an earlier merge already set it). Reward
sources present in every input are kept, their provenance recorded per input under ``merged_from`` (with the
entries all inputs share copied on top); the others are dropped (and logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.building import bulk_writer, check_output, copy_episodes, staged_store
from robot_learning.data.tools.common import console, load_config, require

log = logging.getLogger(__name__)


@dataclass
class MergeConfig:
    """configs/dataset_merge.yaml."""

    inputs: list[str] = field(default_factory=list)
    out: str | None = None
    overwrite: bool = False


def _merged_provenance(stores: Sequence[EpisodeStore], source: str) -> dict[str, Any]:
    """The inputs' provenance of ``source`` under ``merged_from``, with the entries they all share on top."""
    provs = {str(s.path): s.reward_provenance(source) for s in stores}
    if not any(provs.values()):
        return {}
    first = next(iter(provs.values()))
    shared = {k: v for k, v in first.items() if all(p.get(k) == v for p in provs.values())}
    return {**shared, "merged_from": provs}


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the episodes of every store in ``inputs`` into a new store at ``out``; returns ``out``."""
    if len(inputs) < 2:
        raise StoreError(f"merge inputs: expected at least two stores, found {len(inputs)}: {list(map(str, inputs))}")
    out = check_output(out, inputs, overwrite)
    stores = [EpisodeStore.open(p) for p in inputs]
    base = stores[0]
    for other in stores[1:]:
        diffs = base.spec.differences(other.spec)
        if diffs:
            raise StoreError(f"{other.path}: cannot merge a store of task '{other.spec.name}' into one of task "
                             f"'{base.spec.name}' ({base.path}): " + "; ".join(diffs))
    common = sorted(set.intersection(*(set(s.reward_sources) for s in stores)))
    dropped = sorted(set().union(*(s.reward_sources for s in stores)) - set(common))
    if dropped:
        log.warning("reward sources %s are not in every input: dropped from the merge", dropped)
    source = "merge of " + ", ".join(str(s.path) for s in stores)
    with staged_store(out, base.spec, source=source, overwrite=overwrite, options=base.options) as dst:
        with bulk_writer(dst) as writer:
            for src in stores:
                copy_episodes(src, range(src.n_episodes), writer, common, {"source_store": str(src.path)})
        for name in common:
            prov = _merged_provenance(stores, name)
            if prov:
                dst.set_reward_provenance(name, prov)
    return out


def run(cfg: Any) -> int:
    """CLI entry: merge ``inputs`` into ``out``."""
    c = load_config(MergeConfig, cfg, "dataset_merge")
    require(c.inputs, "inputs", "dataset_merge", "a list of at least two stores, e.g. inputs=[a.zarr,b.zarr]")
    require(c.out, "out", "dataset_merge", "the path of the merged store")
    path = merge(c.inputs, c.out, c.overwrite)
    with EpisodeStore.open(path) as store:
        console().print(f"[green]merged[/green] {len(c.inputs)} stores into {path}: "
                        f"{store.n_episodes} episodes, {store.n_steps} steps, rewards {store.reward_sources}")
    return 0
