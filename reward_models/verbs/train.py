"""Train a reward model on a store: a Bradley-Terry ensemble on its preferences, or a success classifier.

    robot-learning reward train dataset=data/reach.zarr model=bt_cnn
    robot-learning reward train dataset=data/reach.zarr model=bt_clip out=runs/bt_clip_reach
    robot-learning reward train dataset=data/reach.zarr model=success_clf
    robot-learning reward train dataset=data/reach.zarr reward_model@model=bt_cnn model.epochs=50 model.members=5

model= names a preset in configs/reward_model/ (bt_cnn, bt_clip, success_clf). To also change its fields,
select it with reward_model@model=<preset>, then use model.<field>=... overrides. A BT model trains on
the preference dataset beside the store (<dataset>.prefs/, or prefs=<dir>) and reports held-out
preference accuracy. A success classifier trains on the episodes' success flags and reports held-out
precision/recall at its calibrated threshold. The model directory (out=, default
runs/<date>/reward_<kind>_<hash>) is what 'reward relabel' and 'reward eval' take as model=.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_learning.config import ConfigError, build
from robot_learning.data.store import EpisodeStore
from reward_models.bt_model import BTRewardModel
from reward_models.model import MODEL_KINDS
from reward_models.preferences import PreferenceDataset
from reward_models.success import SuccessClassifier
from reward_models.verbs.common import default_out, load, model_preset, require, show


@dataclass
class RewardTrainConfig:
    """configs/reward_train.yaml."""

    dataset: str | None = None
    model: Any = None
    prefs: str | None = None
    out: str | None = None


def run(cfg: Any) -> dict[str, Any]:
    c = load(RewardTrainConfig, cfg, "reward_train")
    node = model_preset(require(c.model, "model", "reward_train", "a preset name or a model config"))
    kind = node.get("kind")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"configs/reward_train.yaml: key 'model.kind': expected one of {sorted(MODEL_KINDS)}, found {kind!r}")
    mcfg = build(MODEL_KINDS[kind].Config, node, where="model")
    store = EpisodeStore.open(require(c.dataset, "dataset", "reward_train", "the path of an episode store"))
    prefs = PreferenceDataset(store, c.prefs)
    cache = prefs.root / "features"
    if kind == "bt":
        data = prefs.load()
        runs = [{k: r[k] for k in ("run_id", "labeler", "sampling")} for r in prefs.runs]
        model = BTRewardModel.fit(mcfg, store, data, cache, provenance={"prefs": str(prefs.root), "labelling_runs": runs,
                                                                        "n_queries": len(data)})
    else:
        model = SuccessClassifier.fit(mcfg, store, cache)
    out = model.save(c.out or default_out(kind, model.hash))
    result = {"model_dir": str(out), "kind": kind, "hash": model.hash, "source": model.source_name, **model.metrics}
    show(result)
    return result
