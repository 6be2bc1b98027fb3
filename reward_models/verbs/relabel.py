"""Relabel every step of a store with a trained reward model: data/reward/vlm_pref_<hash> or success_clf_<hash>.

    robot-learning reward relabel dataset=data/reach.zarr model=runs/2025-01-01/reward_bt_1a2b3c4d
    robot-learning train algo=iql task=arm_reach dataset=data/reach.zarr dataset.reward=vlm_pref_1a2b3c4d

r_t = reward(o_{t+1}), Offline RL-VLM-F's next-observation convention. The source carries provenance:
model, labelers, number of queries, config, normalisation or threshold, and hash. Relabelling again with
the same model does nothing; pass overwrite=true to rewrite the source. The store is opened for
append (the writer lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reward_models.relabel import relabel
from reward_models.verbs.common import load, require, show


@dataclass
class RelabelConfig:
    """configs/reward_relabel.yaml."""

    dataset: str | None = None
    model: str | None = None
    overwrite: bool = False
    prefs: str | None = None
    device: str = "auto"


def run(cfg: Any) -> dict[str, Any]:
    c = load(RelabelConfig, cfg, "reward_relabel")
    dataset = require(c.dataset, "dataset", "reward_relabel", "the path of an episode store")
    model = require(c.model, "model", "reward_relabel", "a trained reward model directory (from 'reward train')")
    cache = None if c.prefs is None else f"{c.prefs}/features"
    source = relabel(dataset, model, overwrite=c.overwrite, cache_root=cache, device=c.device)
    result = {"dataset": dataset, "source": source}
    show(result)
    return result
