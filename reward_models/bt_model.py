"""Bradley-Terry reward model: an ensemble r_k(o) in (-1, 1) trained on segment preferences (RL-VLM-F / PEBBLE).

Loss, per member: cross-entropy of softmax([R_k(first), R_k(second)]) against the label, where R_k is
the sum of r_k over a segment's frames, i.e. P(second > first) = sigmoid(R_k(second) - R_k(first)).
Can't-tell answers are dropped, as in RL-VLM-F. Each member trains on its own shuffle of the same pairs,
with Adam at lr 3e-4. An epoch ends training once train accuracy reaches ``stop_train_accuracy`` (97% in
RL-VLM-F), else after ``epochs``. A held-out split of the pairs gives the reported preference accuracy of
the ensemble-mean reward.

Reward normalisation. BT determines rewards only up to an additive constant; the tanh output fixes
their scale only loosely. After training, the ensemble-mean reward of every frame of the training
store is mapped affinely so that its minimum and maximum land on ``reward_range`` (default [-1, 0]).
The map is fixed at training time, so relabelling another store or scoring online observations uses
the same scale. Why [-1, 0]:

- A range of 1 keeps IQL's temperature and expectile, tuned on unit-scale rewards, meaningful.
- Rewards of at most 0 give no living bonus. The simulated tasks end an episode on success, so
  positive per-step rewards would pay a policy for hovering short of the goal instead of finishing
  (the reason IQL subtracts 1 from AntMaze rewards).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tensors import resolve_device
from reward_models.features import FeatureConfig, FeatureExtractor
from reward_models.frames import store_fingerprint
from reward_models.model import FrameModel, gather, member_batches, register
from reward_models.nets import ConvConfig
from reward_models.preferences import PreferenceData

log = logging.getLogger(__name__)


@dataclass
class BTConfig:
    """configs/reward_model/bt_cnn.yaml and bt_clip.yaml."""

    # Model kind: bt = Bradley-Terry reward model.
    kind: Literal["bt"] = "bt"
    # Inputs: frozen CLIP embeddings or raw frames for the CNN, plus optional low-dim state.
    features: FeatureConfig = field(default_factory=FeatureConfig)
    # Ensemble members (RL-VLM-F: 3).
    members: int = 3
    # Hidden widths of the head after the image features ([] = linear head, as RL-VLM-F's CNN).
    hidden: list[int] = field(default_factory=list)
    # The CNN when features.image = cnn (RL-VLM-F's conv stack).
    conv: ConvConfig = field(default_factory=ConvConfig)
    # Adam learning rate (RL-VLM-F: 3e-4 with far more updates; 1e-3 learns within a CPU budget).
    lr: float = 1e-3
    # Adam weight decay.
    weight_decay: float = 0.0
    # Pairs per minibatch, per member (small batches: more updates per labelled pair).
    batch_size: int = 32
    # Most passes over the training pairs.
    epochs: int = 100
    # Stop once an epoch's train accuracy reaches this (RL-VLM-F: 0.97).
    stop_train_accuracy: float = 0.97
    # Fraction of labelled pairs held out to report preference accuracy.
    val_fraction: float = 0.2
    # Per-frame rewards of the training store are mapped onto [low, high]; null = raw ensemble mean.
    reward_range: list[float] | None = field(default_factory=lambda: [-1.0, 0.0])
    # Seed of the split, initialisation and minibatch order.
    seed: int = 0
    # auto = CUDA when present, else CPU.
    device: str = "auto"


def _segment_rows(first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Every step index covered by the segments (first, length), flattened."""
    steps = np.arange(int(length.max()))
    return (first[:, None] + steps)[steps < length[:, None]]


def _segment_positions(first: np.ndarray, length: np.ndarray, universe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``universe`` (sorted rows) of each segment's steps, padded to the longest: (P, L), mask (P, L)."""
    steps = np.arange(int(length.max()))
    rows = first[:, None] + steps
    mask = steps < length[:, None]
    return np.searchsorted(universe, np.where(mask, rows, first[:, None])), mask


@register
class BTRewardModel(FrameModel):
    """A trained BT ensemble; per-frame reward = normalised ensemble mean (see the module docstring)."""

    kind = "bt"
    tanh = True
    source_prefix = "vlm_pref"
    Config = BTConfig

    def values(self, raw: torch.Tensor) -> torch.Tensor:
        mean = raw.mean(dim=0)
        norm = self.params.get("normalisation")
        if not norm:
            return mean
        span = max(norm["raw_max"] - norm["raw_min"], 1e-8)
        low, high = norm["range"]
        return low + (mean - norm["raw_min"]) * ((high - low) / span)

    @classmethod
    def fit(cls, cfg: BTConfig, store: EpisodeStore, prefs: PreferenceData, cache_root: Path | None,
            provenance: dict | None = None) -> BTRewardModel:
        """Train on the decided pairs of ``prefs`` (labels of ``store``); metrics land in ``model.metrics``."""
        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        data = prefs.decided()
        if len(data) < 2:
            raise StoreError(f"{store.path}: preferences: expected at least 2 decided (not can't-tell) pairs to train "
                             f"on, found {len(data)} of {len(prefs)}; label more with 'robot-learning label'")
        if cfg.reward_range is not None and len(cfg.reward_range) != 2:
            raise ConfigError(f"model.reward_range: expected [low, high] or null, found {cfg.reward_range}")
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(data))
        n_val = int(math.floor(cfg.val_fraction * len(data)))
        val, train = order[:n_val], order[n_val:]

        features = FeatureExtractor.for_store(cfg.features, store, device)
        universe = np.unique(np.concatenate([_segment_rows(data.first, data.length), _segment_rows(data.second, data.length)]))
        log.info("bt: %d train / %d held-out pairs over %d distinct frames", len(train), len(val), len(universe))
        inputs = features.from_store(store, universe, cache_root)
        pos1, mask1 = _segment_positions(data.first, data.length, universe)
        pos2, mask2 = _segment_positions(data.second, data.length, universe)
        t = lambda x, dt=torch.long: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        pos1, pos2, mask1, mask2 = t(pos1), t(pos2), t(mask1, torch.float32), t(mask2, torch.float32)
        labels = t(data.choice.astype(np.int64))
        input_dims = features.input_dims(store.spec.obs[features.camera].shape)
        net = cls.build_net(cfg, input_dims).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        train_t = t(train)

        def segment_sums(model_inputs, idx: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, shared: bool) -> torch.Tensor:
            p, m = pos[idx], mask[idx]
            if shared:
                r = net.forward_shared(gather(model_inputs, p.reshape(-1))).reshape(cfg.members, *p.shape)
            else:
                r = net(gather(model_inputs, p.reshape(p.shape[0], -1))).reshape(p.shape)
            return (r * m).sum(-1)

        epochs_run, train_acc = 0, 0.0
        for epoch in range(cfg.epochs):
            net.train()
            correct, seen, loss_sum = 0.0, 0, 0.0
            for batch in member_batches(len(train), cfg.members, cfg.batch_size, generator):
                idx = train_t[batch.to(device)]
                logits = torch.stack([segment_sums(inputs, idx, pos1, mask1, False),
                                      segment_sums(inputs, idx, pos2, mask2, False)], dim=-1)
                target = labels[idx]
                loss = F.cross_entropy(logits.reshape(-1, 2), target.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                correct += (logits.argmax(-1) == target).float().sum().item()
                seen += target.numel()
                loss_sum += loss.item() * target.numel()
            epochs_run, train_acc = epoch + 1, correct / max(seen, 1)
            if epoch % 10 == 0 or train_acc >= cfg.stop_train_accuracy:
                log.info("bt epoch %d: loss %.4f, train accuracy %.3f", epoch + 1, loss_sum / max(seen, 1), train_acc)
            if train_acc >= cfg.stop_train_accuracy:
                break
        net.eval()

        def accuracy(idx: np.ndarray) -> float | None:
            if len(idx) == 0:
                return None
            with torch.no_grad():
                i = t(idx)
                r1 = segment_sums(inputs, i, pos1, mask1, True).mean(0)
                r2 = segment_sums(inputs, i, pos2, mask2, True).mean(0)
            return float(((r2 > r1).long() == labels[i]).float().mean().item())

        metrics = {"train_accuracy": train_acc, "heldout_accuracy": accuracy(val), "epochs": epochs_run,
                   "n_pairs": len(prefs), "n_decided": len(data), "n_train": len(train), "n_heldout": len(val)}
        log.info("bt: held-out preference accuracy %s on %d pairs (train %.3f after %d epochs)",
                 "n/a" if metrics["heldout_accuracy"] is None else f"{metrics['heldout_accuracy']:.3f}", len(val),
                 train_acc, epochs_run)
        keys = data.keys()
        training = {"store": store_fingerprint(store), "runs": sorted(set(data.run.tolist())),
                    "heldout_keys": [keys[i] for i in val],
                    **(provenance or {})}
        model = cls(cfg, features, net, {"input_dims": input_dims, "normalisation": None}, metrics, training)
        if cfg.reward_range is not None:
            mean = model.store_outputs(store, cache_root).mean(0)
            model.params["normalisation"] = {"raw_min": float(mean.min()), "raw_max": float(mean.max()),
                                             "range": [float(v) for v in cfg.reward_range]}
        return model

    def segment_accuracy(self, store: EpisodeStore, prefs: PreferenceData, cache_root: Path | None = None) -> float | None:
        """Fraction of decided pairs of ``prefs`` on which the ensemble-mean reward agrees with the label."""
        data = prefs.decided()
        if len(data) == 0:
            return None
        frame = self.store_outputs(store, cache_root).mean(0).numpy().astype(np.float64)
        csum = np.concatenate([[0.0], np.cumsum(frame)])
        r1 = csum[data.first + data.length] - csum[data.first]
        r2 = csum[data.second + data.length] - csum[data.second]
        return float(np.mean((r2 > r1).astype(np.int8) == data.choice))
