"""Write a trained model's per-step rewards into a store as ``data/reward/<prefix>_<hash>`` with provenance.

The source name is ``vlm_pref_<hash>`` for a Bradley-Terry model and ``success_clf_<hash>`` for a
success classifier. The hash covers the model's config, normalisation/threshold and weights, so a
source name pins down exactly what made the rewards. Relabelling twice with the same model is a no-op;
``overwrite`` replaces the source. Rewards follow the next-observation convention (reward_models.model).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from robot_learning.data.store import EpisodeStore
from reward_models.model import FrameModel, load_model
from reward_models.preferences import default_root

log = logging.getLogger(__name__)

CONVENTION = ("r_t = reward(o_{t+1}) (Offline RL-VLM-F's next-observation convention); the last step of an "
              "episode, whose next observation is not stored, uses reward(o_t)")


def provenance(model: FrameModel, model_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What made a relabelled source: model kind, hash, directory, config, parameters, metrics and training data."""
    return {"kind": model.source_prefix, "model_hash": model.hash, "model_dir": str(model_dir) if model_dir else None,
            "model": model.describe(), "convention": CONVENTION}


def relabel(store_path: str | os.PathLike, model: FrameModel | str | os.PathLike, *, overwrite: bool = False,
            cache_root: str | os.PathLike | None = None, device: str = "auto") -> str:
    """Relabel every committed step of the store at ``store_path``; returns the reward source name."""
    model_dir = None
    if not isinstance(model, FrameModel):
        model_dir = Path(model)
        model = load_model(model_dir, device=device)
    cache = Path(cache_root) if cache_root is not None else default_root(store_path) / "features"
    with EpisodeStore.open(store_path, mode="a") as store:
        model.features.check_store(store)
        source = model.source_name
        if source in store.reward_sources and not overwrite:
            log.info("%s: reward source '%s' already written by this model; nothing to do (overwrite=true to redo)",
                     store.path, source)
            return source
        rewards = model.step_rewards(store, cache)
        store.add_reward(source, rewards, provenance(model, model_dir), overwrite=overwrite)
        log.info("%s: wrote reward source '%s' (%d steps, mean %.3f)", store.path, source, len(rewards), float(rewards.mean()))
    return source
