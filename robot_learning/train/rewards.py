"""The reward of online transitions: the same reward the offline data was labelled with.

Online rewards must match the offline ones (algorithms.md section 13). A simulator source (``env``,
``dense``, ``sparse``) is computed by the training env itself (:func:`~robot_learning.train.envs.sim_reward_kwargs`).
A learned source (``vlm_pref_<hash>`` from a Bradley-Terry model, ``success_clf_<hash>`` from a success
classifier) is computed by the model that labelled the store: its directory is the ``model_dir`` of the
source's provenance (written by ``robot-learning reward relabel``), or ``online.reward_model=<dir>``.
The model scores the true next observation of every step, batched on the training device, which is the
relabelling convention ``r_t = reward(o_{t+1})``; the learner's ``transform_reward`` is applied after it,
when batches are sampled, exactly as for the offline rewards.

``online.reward_model`` also gives an online reward to data labelled by the simulator (RoboFuME: demos
with their recorded success reward offline, the success classifier online). It is refused when the
offline source is a learned one made by a different model: the two phases would optimise different rewards.

The model reads its own observation keys (a camera, optional low-dim state), which the training env must
then return even when the policy reads only low-dimensional keys: :attr:`OnlineReward.obs_keys` is added
to the env's keys, the policy and the replay buffer still see only the learner's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robot_learning.config import ConfigError
from robot_learning.spec import TaskSpec
from robot_learning.train.envs import Step, sim_reward_kwargs

if TYPE_CHECKING:
    from robot_learning.data.store import EpisodeStore

log = logging.getLogger(__name__)

#: Reward sources written by ``robot-learning reward relabel``: <prefix>_<8 hex digits of the model hash>.
LEARNED_SOURCE = re.compile(r"^(vlm_pref|success_clf)_([0-9a-f]{8})$")


@dataclass
class OnlineReward:
    """How the training env's transitions are rewarded (see the module docstring).

    ``model`` is None for a simulator source: the env returns the reward (``env_kwargs`` select it).
    Otherwise ``model(next_obs)`` gives one reward per sub-environment and the env's own reward is ignored.
    """

    source: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    model_dir: str | None = None

    @property
    def obs_keys(self) -> list[str]:
        """Observation keys the reward model reads (none for a simulator reward)."""
        if self.model is None:
            return []
        return [self.model.features.camera, *self.model.features.cfg.lowdim_keys]

    @property
    def is_success_classifier(self) -> bool:
        """True when the reward is a success classifier's 0/1 verdict (it then also says when a task is done)."""
        return self.model is not None and self.model.kind == "success"

    @torch.no_grad()
    def __call__(self, step: Step) -> np.ndarray:
        """Raw reward of each sub-environment's transition of ``step`` (before the learner's transform)."""
        if self.model is None:
            return step.reward
        return torch.as_tensor(self.model(step.next_obs)).float().cpu().numpy()

    def describe(self) -> str:
        return f"'{self.source}' from the simulator" if self.model is None else \
            f"reward model {self.model_dir} ({self.model.source_name})"


def learned_source_hash(source: str) -> str | None:
    """The model hash a learned reward source name carries, or None for other sources."""
    match = LEARNED_SOURCE.match(source)
    return match.group(2) if match else None


def resolve_online_reward(spec: TaskSpec, source: str, store: EpisodeStore | None, reward_model: str | None,
                          device: torch.device | str = "cpu") -> OnlineReward:
    """The online reward of a run whose offline reward source is ``source`` (see the module docstring).

    Loads the reward model when one is needed, and refuses with one message what cannot match the offline
    rewards: a learned source without a model directory, or a model other than the one that labelled the store.
    """
    expected_hash = learned_source_hash(source)
    if reward_model is None and expected_hash is None:
        return OnlineReward(source, sim_reward_kwargs(spec, source))
    if reward_model is None:
        provenance = store.reward_provenance(source) if store is not None and source in store.reward_sources else {}
        reward_model = provenance.get("model_dir")
        where = f"{store.path if store is not None else 'the dataset'}: reward source '{source}'"
        if not reward_model:
            raise ConfigError(f"{where}: online training needs the model that labelled it; its provenance names no "
                              "model directory. Give online.reward_model=<directory written by robot-learning reward "
                              "train>")
        if not Path(reward_model).is_dir():
            raise ConfigError(f"{where}: provenance 'model_dir': expected the directory of the model that labelled "
                              f"it, found '{reward_model}' missing (relative to {Path.cwd()}); give "
                              "online.reward_model=<directory>")
    from reward_models.model import load_model  # reward_models builds on robot_learning: import when needed

    model = load_model(reward_model, device=str(device))
    if expected_hash is not None and model.hash != expected_hash:
        raise ConfigError(f"online.reward_model={reward_model}: expected the model that labelled reward source "
                          f"'{source}' (hash {expected_hash}), found a model with hash {model.hash} "
                          f"({model.source_name}); online and offline rewards would differ")
    if expected_hash is None:
        log.info("offline rewards from '%s', online rewards from reward model %s (%s)", source, reward_model,
                 model.source_name)
    missing = [k for k in [model.features.camera, *model.features.cfg.lowdim_keys] if k not in spec.obs]
    if missing:
        raise ConfigError(f"online.reward_model={reward_model}: the model reads observation '{missing[0]}', "
                          f"expected a key of task '{spec.name}' {list(spec.obs_keys)}")
    return OnlineReward(source, {}, model, str(reward_model))
