"""Success classifier (RoboFuME): a binary classifier on camera frames whose thresholded output is a sparse reward.

Training frames come from episodes with a ``success`` flag (``meta/episode/success``):

- positives: the last ``positives_last`` frames of successful episodes;
- negatives: every frame of failed episodes, and the first ``negatives_early`` fraction of the frames of
  successful episodes. The frames in between are left out: the moment of success is not labelled.

Episodes, not frames, are split into train and held-out sets, so near-identical neighbouring frames
never straddle the split. Training uses binary cross-entropy, with the positive class weighted by the
negative/positive ratio. The threshold on the ensemble-mean probability is the lowest one whose
held-out precision reaches ``target_precision`` (a false success is costlier online than a late
one); when none reaches it, the F1-maximising threshold is used. Precision and recall at the threshold
are reported. ``model(obs_batch)`` returns the sparse reward 1[p(success | o) > threshold], the
pluggable r(o) of the RoboFuME learner.
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

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tensors import resolve_device
from reward_models.features import FeatureConfig, FeatureExtractor
from reward_models.frames import store_fingerprint
from reward_models.model import FrameModel, gather, member_batches, register
from reward_models.nets import ConvConfig

log = logging.getLogger(__name__)


@dataclass
class SuccessConfig:
    """configs/reward_model/success_clf.yaml."""

    # Model kind: success = binary success classifier.
    kind: Literal["success"] = "success"
    # Inputs: frozen CLIP embeddings or raw frames for the CNN, plus optional low-dim state.
    features: FeatureConfig = field(default_factory=FeatureConfig)
    # Ensemble members (the probability is their mean).
    members: int = 1
    # Hidden widths of the head after the image features.
    hidden: list[int] = field(default_factory=lambda: [256])
    # The CNN when features.image = cnn.
    conv: ConvConfig = field(default_factory=ConvConfig)
    # Last frames of each successful episode used as positives.
    positives_last: int = 2
    # Leading fraction of each successful episode's frames used as negatives.
    negatives_early: float = 0.5
    # Adam learning rate.
    lr: float = 1e-3
    # Frames per minibatch, per member.
    batch_size: int = 64
    # Passes over the training frames.
    epochs: int = 10
    # Fraction of episodes held out to calibrate the threshold and report precision/recall.
    val_fraction: float = 0.25
    # Lowest held-out precision the threshold must reach (else the F1-best threshold is used).
    target_precision: float = 0.9
    # Seed of the split, initialisation and minibatch order.
    seed: int = 0
    # auto = CUDA when present, else CPU.
    device: str = "auto"


def success_frames(store: EpisodeStore, positives_last: int, negatives_early: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, labels 0/1, episode of each row) of the labelled frames (see the module docstring)."""
    meta = store.episode_meta()
    if "success" not in meta:
        raise StoreError(f"{store.path}: 'meta/episode/success': expected a success flag per episode to train a "
                         f"success classifier, found fields {sorted(meta)}")
    success = np.asarray(meta["success"]).astype(bool)
    if not success.any() or success.all():
        raise StoreError(f"{store.path}: 'meta/episode/success': expected both successful and failed episodes, found "
                         f"{int(success.sum())} of {len(success)} successful")
    rows, labels, episodes = [], [], []
    for e, (start, end) in enumerate(zip(store.episode_starts, store.episode_ends)):
        n = int(end - start)
        if success[e]:
            pos = np.arange(max(start, end - positives_last), end)
            neg = np.arange(start, start + min(int(n * negatives_early), n - len(pos)))
        else:
            pos, neg = np.zeros(0, np.int64), np.arange(start, end)
        rows += [pos, neg]
        labels += [np.ones(len(pos)), np.zeros(len(neg))]
        episodes += [np.full(len(pos) + len(neg), e)]
    return np.concatenate(rows).astype(np.int64), np.concatenate(labels).astype(np.float32), np.concatenate(episodes)


def calibrate(prob: np.ndarray, label: np.ndarray, target_precision: float) -> dict[str, float]:
    """Threshold on held-out probabilities with precision, recall and F1 there (see the module docstring)."""
    order = np.argsort(-prob, kind="stable")
    p, y = prob[order], label[order].astype(bool)
    tp = np.cumsum(y)
    predicted = np.arange(1, len(p) + 1)
    precision, recall = tp / predicted, tp / max(int(y.sum()), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    last = np.r_[p[1:] != p[:-1], True]
    ok = np.flatnonzero(last & (precision >= target_precision))
    i = ok[-1] if len(ok) else int(np.flatnonzero(last)[np.argmax(f1[last])])
    threshold = float(p[i + 1] + p[i]) / 2 if i + 1 < len(p) else float(p[i]) / 2
    return {"threshold": threshold, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
            "met_target_precision": bool(len(ok))}


@register
class SuccessClassifier(FrameModel):
    """A trained success classifier; per-frame reward = 1[mean member probability > threshold]."""

    kind = "success"
    tanh = False
    source_prefix = "success_clf"
    Config = SuccessConfig

    def probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw).mean(dim=0)

    def values(self, raw: torch.Tensor) -> torch.Tensor:
        return (self.probabilities(raw) > self.params["threshold"]).float()

    @classmethod
    def fit(cls, cfg: SuccessConfig, store: EpisodeStore, cache_root: Path | None, provenance: dict | None = None) -> SuccessClassifier:
        """Train on ``store``'s success/failure frames, calibrate the threshold on held-out episodes."""
        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        rows, labels, episodes = success_frames(store, cfg.positives_last, cfg.negatives_early)
        rng = np.random.default_rng(cfg.seed)
        succ = np.asarray(store.episode_meta()["success"]).astype(bool)
        held = np.zeros(store.n_episodes, bool)
        for group in (np.flatnonzero(succ), np.flatnonzero(~succ)):
            held[rng.permutation(group)[:int(math.ceil(cfg.val_fraction * len(group)))]] = True
        val = held[episodes]
        features = FeatureExtractor.for_store(cfg.features, store, device, needed_by="the success classifier")
        inputs = features.from_store(store, rows, cache_root)
        input_dims = features.input_dims(store.spec.obs[features.camera].shape)
        net = cls.build_net(cfg, input_dims).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        y = torch.as_tensor(labels, device=device)
        train = torch.as_tensor(np.flatnonzero(~val), device=device)
        n_pos = float(labels[~val].sum())
        pos_weight = torch.tensor((len(train) - n_pos) / max(n_pos, 1.0), device=device)
        log.info("success: %d train frames (%d positive), %d held-out frames from %d held-out episodes",
                 len(train), int(n_pos), int(val.sum()), int(held.sum()))
        generator = torch.Generator().manual_seed(cfg.seed)
        for epoch in range(cfg.epochs):
            net.train()
            total = 0.0
            for batch in member_batches(len(train), cfg.members, cfg.batch_size, generator):
                idx = train[batch.to(device)]
                logits = net(gather(inputs, idx))
                loss = F.binary_cross_entropy_with_logits(logits, y[idx], pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * idx.numel()
            log.info("success epoch %d: loss %.4f", epoch + 1, total / max(len(train) * cfg.members, 1))
        net.eval()
        model = cls(cfg, features, net, {"input_dims": input_dims, "threshold": 0.5}, {},
                    {"store": store_fingerprint(store), "heldout_episodes": np.flatnonzero(held).tolist(), **(provenance or {})})
        with torch.no_grad():
            prob = model.probabilities(net.forward_shared(gather(inputs, torch.as_tensor(np.flatnonzero(val), device=device)))).cpu().numpy()
        cal = calibrate(prob, labels[val], cfg.target_precision)
        if not cal["met_target_precision"]:
            log.warning("success: no threshold reaches held-out precision %.2f; using the F1-best one", cfg.target_precision)
        model.params["threshold"] = cal["threshold"]
        model.metrics = {**cal, "n_train_frames": int(len(train)), "n_heldout_frames": int(val.sum()),
                         "n_positive_train": int(n_pos), "n_positive_heldout": int(labels[val].sum())}
        log.info("success: threshold %.3f, held-out precision %.3f, recall %.3f", cal["threshold"], cal["precision"], cal["recall"])
        return model
