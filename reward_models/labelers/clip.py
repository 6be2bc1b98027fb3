"""``clip`` labeler: open_clip zero-shot similarity between each frame and the task text.

A segment's score is the mean cosine similarity of its frames to the task sentence (put into
``prompt``); the segment with the higher score wins, and pairs within ``margin`` are can't-tell. The
confidence is CLIP's own two-way softmax probability, ``sigmoid(logit_scale * |score difference|)``.
Frame embeddings go through the per-store embedding cache, so labelling more pairs, training a
``bt_clip`` model and relabelling reuse the same forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.data.store import EpisodeStore
from reward_models.clip_encoder import ClipConfig
from reward_models.features import FeatureConfig, FeatureExtractor
from reward_models.labelers.base import Labeler, Labels, Pairs, compare, register


@dataclass
class ClipLabelerConfig:
    """configs/labeler/clip.yaml."""

    # The open_clip model (architecture, weights, device, batch size).
    clip: ClipConfig = field(default_factory=ClipConfig)
    # Camera observation key; null = the task's first camera.
    camera: str | None = None
    # Text compared with the frames; {task} is replaced by the task sentence of the store's TaskSpec.
    prompt: str = "{task}"
    # Can't tell when the two segments' mean similarities differ by at most this much (cosine units).
    margin: float = 0.0


@register
class ClipLabeler(Labeler):
    name = "clip"
    Config = ClipLabelerConfig

    def __init__(self, cfg: ClipLabelerConfig, store: EpisodeStore, workdir: Path):
        super().__init__(cfg, store, workdir)
        self.features = FeatureExtractor.for_store(FeatureConfig(image="clip", camera=cfg.camera, clip=cfg.clip), store,
                                                   device=cfg.clip.device, needed_by="labeler 'clip'")
        self.encoder = self.features.encoder
        self.text = cfg.prompt.format(task=store.spec.text)
        self.text_embedding = self.encoder.encode_texts([self.text])[0]

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Cosine similarity to the task text of the frames at global step indices ``rows`` (any shape)."""
        flat = np.asarray(rows).reshape(-1)
        emb = self.features.from_store(self.store, flat, cache_root=self.workdir / "features")["embedding"]
        return (emb.cpu().numpy() @ self.text_embedding).reshape(np.shape(rows))

    def label(self, pairs: Pairs) -> Labels:
        s1 = self.scores(pairs.rows("first")).mean(axis=1)
        s2 = self.scores(pairs.rows("second")).mean(axis=1)
        confidence = 1.0 / (1.0 + np.exp(-self.encoder.logit_scale * np.abs(s2 - s1)))
        return Labels(compare(s1, s2, self.cfg.margin), confidence.astype(np.float32))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "encoder": self.encoder.identity(), "text": self.text,
                "camera": self.features.camera}
