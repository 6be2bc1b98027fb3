"""How good a trained reward model is on a store: return correlation, preference accuracy, a picture.

- Spearman rho between each episode's predicted return (sum of the model's per-step rewards) and its
  true return under every reward source not made by a reward model (e.g. ``dense``, ``sparse``). A store
  of a simulated task without such a source (recorded over ROS: no rewards) is scored against the
  simulator's per-step progress (``sim_progress``, what the oracle labeler ranks by).
  With per-step rewards of one sign, episode length alone correlates with the return (short successful
  episodes), so the rho of the length-only predictor (-length) is reported beside it, and so is the
  per-step rho (predicted vs true reward of every step), which length cannot inflate.
- Preference accuracy: the held-out accuracy recorded at training, plus the accuracy on this store's
  preference pairs not used for training (when the store has a preference dataset).
- For a success classifier: precision/recall at its threshold on this store's success/failure frames
  (when the store has both successful and failed episodes).
- A PNG with predicted and true per-step rewards of sample episodes (some successful, some not).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from robot_learning.data.store import EpisodeStore
from reward_models.bt_model import BTRewardModel
from reward_models.frames import read_obs
from reward_models.model import FrameModel
from reward_models.preferences import PreferenceDataset, default_root
from reward_models.success import SuccessClassifier, success_frames

log = logging.getLogger(__name__)

#: Ground truth of a simulated store without true reward sources: the simulator's per-step progress.
SIM_PROGRESS = "sim_progress"
#: Reward sources written by reward models (never used as ground truth).
DERIVED_PREFIXES = (BTRewardModel.source_prefix + "_", SuccessClassifier.source_prefix + "_")


def episode_returns(rewards: np.ndarray, store: EpisodeStore) -> np.ndarray:
    """Sum of ``rewards`` (T,) over each episode of ``store``."""
    return np.add.reduceat(np.asarray(rewards, np.float64), store.episode_starts) if store.n_episodes else np.zeros(0)


def _rho(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation, None when undefined (a constant input)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def true_sources(store: EpisodeStore) -> list[str]:
    """Reward sources that are ground truth (not written by a reward model)."""
    return [s for s in store.reward_sources if not s.startswith(DERIVED_PREFIXES)]


def ground_truth(store: EpisodeStore) -> dict[str, np.ndarray]:
    """Per-step true rewards by name: the store's true sources, else the simulator's progress (simulated tasks)."""
    truth = {s: np.asarray(store.reward(s), np.float64) for s in true_sources(store)}
    if truth or store.spec.env is None or not store.n_steps:
        return truth
    import sim

    obs = read_obs(store, store.spec.low_dim_keys, np.arange(store.n_steps))
    return {SIM_PROGRESS: np.asarray(sim.progress(store.spec, obs), np.float64)}


def sample_episodes(store: EpisodeStore, count: int) -> list[int]:
    """Up to ``count`` episodes spread over the store, half successful and half not when the meta says so."""
    meta = store.episode_meta()
    idx = np.arange(store.n_episodes)
    groups = [idx[np.asarray(meta["success"]).astype(bool)], idx[~np.asarray(meta["success"]).astype(bool)]] \
        if "success" in meta else [idx]
    picked: list[int] = []
    for g, group in enumerate(groups):
        want = (count - len(picked)) // (len(groups) - g)
        picked += group[np.linspace(0, len(group) - 1, min(want, len(group))).astype(int)].tolist() if len(group) else []
    return sorted(picked)


def plot(store: EpisodeStore, predicted: np.ndarray, truth: dict[str, np.ndarray], episodes: list[int], path: Path,
         title: str) -> Path:
    """Predicted vs true per-step rewards of ``episodes``, one panel each (true on a second axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(episodes), 1, figsize=(8, 2.2 * len(episodes)), squeeze=False)
    meta = store.episode_meta()
    for ax, e in zip(axes[:, 0], episodes):
        start, end = int(store.episode_starts[e]), int(store.episode_ends[e])
        ax.plot(predicted[start:end], color="tab:blue", label="predicted")
        ax.set_ylabel("predicted", color="tab:blue")
        twin = ax.twinx()
        for (source, true), color in zip(truth.items(), ("tab:orange", "tab:green", "tab:red", "tab:purple")):
            twin.plot(true[start:end], color=color, linestyle="--", label=f"true: {source}")
        twin.set_ylabel("true")
        status = "" if "success" not in meta else (" (success)" if bool(meta["success"][e]) else " (failure)")
        ax.set_title(f"episode {e}{status}", fontsize=9)
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate(store: EpisodeStore, model: FrameModel, out_dir: str | os.PathLike, *, episodes: int = 4,
             prefs_root: str | os.PathLike | None = None, cache_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Compute the metrics above, write ``<out_dir>/reward_eval.json`` and ``reward_eval.png``; returns the metrics."""
    out = Path(out_dir)
    prefs_root = Path(prefs_root) if prefs_root is not None else default_root(store.path)
    cache = Path(cache_root) if cache_root is not None else prefs_root / "features"
    model.features.check_store(store)
    predicted = model.step_rewards(store, cache)
    pred_returns = episode_returns(predicted, store)
    truth = ground_truth(store)
    metrics: dict[str, Any] = {"store": str(store.path), "model": model.kind, "model_hash": model.hash,
                               "episodes": store.n_episodes, "spearman_return": {}, "spearman_return_length_only": {},
                               "spearman_step": {}, "training_metrics": model.metrics}
    for source, true in truth.items():
        true_returns = episode_returns(true, store)
        metrics["spearman_return"][source] = _rho(pred_returns, true_returns)
        metrics["spearman_return_length_only"][source] = _rho(-store.episode_lengths.astype(np.float64), true_returns)
        metrics["spearman_step"][source] = _rho(predicted, true)
    if isinstance(model, BTRewardModel):
        metrics["heldout_accuracy"] = model.metrics.get("heldout_accuracy")
        if (prefs_root / "labels.jsonl").exists():
            data = PreferenceDataset(store, prefs_root).load()
            runs, held = set(model.training.get("runs", [])), set(model.training.get("heldout_keys", []))
            unseen = data.select(np.array([r not in runs or k in held for r, k in zip(data.run, data.keys())], bool))
            metrics["store_pref_accuracy"] = model.segment_accuracy(store, unseen, cache)
            metrics["store_pref_pairs"] = len(unseen.decided())
    success = np.asarray(store.episode_meta().get("success", [])).astype(bool)
    if isinstance(model, SuccessClassifier) and success.any() and not success.all():
        rows, labels, _ = success_frames(store, model.cfg.positives_last, model.cfg.negatives_early)
        hit = model.frame_rewards(store, cache)[rows] > 0.5
        tp = float((hit & (labels > 0.5)).sum())
        metrics["store_precision"] = tp / max(float(hit.sum()), 1.0)
        metrics["store_recall"] = tp / max(float((labels > 0.5).sum()), 1.0)
        metrics["threshold"] = model.params["threshold"]
    title = (f"{model.source_name}: Spearman rho of returns " +
             ", ".join(f"{s} {v:.2f}" for s, v in metrics["spearman_return"].items() if v is not None))
    metrics["plot"] = str(plot(store, predicted, truth, sample_episodes(store, episodes), out / "reward_eval.png", title))
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_eval.json").write_text(json.dumps(metrics, indent=1))
    return metrics
