"""Evaluate a trained reward model on a store: Spearman rho of episode returns, preference accuracy, a plot.

    robot-learning reward eval dataset=data/reach.zarr model=runs/2025-01-01/reward_bt_1a2b3c4d

Writes <out>/reward_eval.json and <out>/reward_eval.png (default out: <model>/eval), showing predicted vs
true per-step rewards of sample episodes. The JSON has the Spearman rho between predicted and true
episode returns for every ground-truth reward source, the held-out preference accuracy from training,
and the accuracy on this store's unseen preference pairs (precision/recall for a success classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot_learning.data.store import EpisodeStore
from reward_models.evaluate import evaluate
from reward_models.model import load_model
from reward_models.verbs.common import load, require, show


@dataclass
class RewardEvalConfig:
    """configs/reward_eval.yaml."""

    dataset: str | None = None
    model: str | None = None
    out: str | None = None
    episodes: int = 4
    prefs: str | None = None
    device: str = "auto"


def run(cfg: Any) -> dict[str, Any]:
    c = load(RewardEvalConfig, cfg, "reward_eval")
    store = EpisodeStore.open(require(c.dataset, "dataset", "reward_eval", "the path of an episode store"))
    model_dir = require(c.model, "model", "reward_eval", "a trained reward model directory (from 'reward train')")
    model = load_model(model_dir, device=c.device)
    metrics = evaluate(store, model, c.out or Path(model_dir) / "eval", episodes=c.episodes, prefs_root=c.prefs)
    show(metrics)
    return metrics
