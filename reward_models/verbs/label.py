"""Ask a labeler which of two observations (or short segments) of a store makes more progress on its task.

    robot-learning label dataset=data/reach.zarr labeler=oracle labeler.noise=0.1 queries=1000
    robot-learning label dataset=data/reach.zarr labeler=clip labeler.clip.arch=ViT-B-32 \\
        labeler.clip.pretrained=/models/clip_b32.pt queries=500
    RL_VLM_BASE_URL=http://localhost:8000/v1 RL_VLM_MODEL=qwen2-vl \\
        robot-learning label dataset=data/reach.zarr labeler=chat_vlm queries=200
    robot-learning label dataset=data/reach.zarr sampling=disagreement model=runs/.../reward_bt_x queries=200 seed=1

Answers are appended to the preference dataset beside the store (<dataset>.prefs/, or prefs=<dir>) with
the labeler's provenance. Re-running the same command labels nothing new (use another seed=). A run
that was interrupted resumes, and chat_vlm answers come from its response cache. The store is opened
read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore
from reward_models.labelers import build_labeler
from reward_models.labeling import Sampling, label_store
from reward_models.model import load_model
from reward_models.preferences import PreferenceDataset
from reward_models.verbs.common import load, require, show


@dataclass
class LabelConfig:
    """configs/label.yaml."""

    dataset: str | None = None
    labeler: dict[str, Any] = field(default_factory=dict)
    queries: int = 100
    sampling: Literal["uniform", "disagreement"] = "uniform"
    segment: int = 1
    candidates: int = 10
    seed: int = 0
    model: str | None = None
    prefs: str | None = None
    chunk: int = 32
    device: str = "auto"


def run(cfg: Any) -> dict[str, Any]:
    c = load(LabelConfig, cfg, "label")
    store = EpisodeStore.open(require(c.dataset, "dataset", "label", "the path of an episode store"))
    prefs = PreferenceDataset(store, c.prefs)
    labeler = build_labeler(c.labeler, store, prefs.root, where=f"configs/labeler/{c.labeler.get('name')}.yaml")
    member_rewards, model_hash = None, None
    if c.sampling == "disagreement":
        model = load_model(require(c.model, "model", "label", "a trained reward model dir for sampling=disagreement"),
                           device=c.device)
        if model.kind != "bt" or model.cfg.members < 2:
            raise ConfigError(f"{c.model}: sampling=disagreement: expected a Bradley-Terry ensemble (kind bt, >= 2 "
                              f"members), found kind {model.kind} with {model.cfg.members} member(s)")
        member_rewards, model_hash = model.store_outputs(store, prefs.root / "features").numpy(), model.hash
    sampling = Sampling(queries=c.queries, method=c.sampling, segment=c.segment, candidates=c.candidates, seed=c.seed)
    summary = label_store(labeler, prefs, sampling, chunk=c.chunk, member_rewards=member_rewards, model_hash=model_hash)
    show(summary)
    return summary
