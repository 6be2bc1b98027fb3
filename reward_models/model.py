"""What the Bradley-Terry reward model and the success classifier share: a per-frame ensemble saved as a directory.

A :class:`FrameModel` is a :class:`~reward_models.nets.RewardNet` over :class:`FeatureExtractor` inputs plus
the numbers that turn its raw outputs into a per-frame reward (a normalisation, a threshold). It
scores stored steps in blocks, and live observation batches via ``model(obs)``, the callable that
online fine-tuning plugs in. Relabelling uses the next-observation convention of Offline RL-VLM-F:
``r_t = reward(o_{t+1})``. The store keeps no observation after an episode's last step, so that
step uses its own frame.

Directory layout: ``model.json`` (kind, config, feature state, normalisation/threshold, metrics,
training provenance, hash) and ``weights.pt`` (the network's state dict).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from robot_learning.config import ConfigError, asdict, build
from robot_learning.data.store import EpisodeStore
from reward_models.features import FeatureExtractor
from reward_models.frames import iter_blocks, next_rows
from reward_models.nets import RewardNet

log = logging.getLogger(__name__)

MODEL_FILE, WEIGHTS_FILE = "model.json", "weights.pt"


def gather(inputs: Mapping[str, torch.Tensor], positions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-member inputs (K, M, ...) from preloaded inputs (U, ...) at positions (K, M)."""
    return {k: v[positions] for k, v in inputs.items()}


def member_batches(n: int, members: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch of minibatch indices (K, B) into ``range(n)``: each member its own random order."""
    order = torch.argsort(torch.rand(members, n, generator=generator), dim=1)
    for start in range(0, n, batch):
        yield order[:, start:start + batch]


class FrameModel(ABC):
    """A trained per-frame ensemble; subclasses define how raw outputs (K, N) become rewards (N,)."""

    kind: ClassVar[str]
    #: Whether the network squashes its outputs with tanh (BT rewards) or returns logits (classifier).
    tanh: ClassVar[bool]
    #: Reward source name prefix of a relabelled store: ``<prefix>_<hash>``.
    source_prefix: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, cfg: Any, features: FeatureExtractor, net: RewardNet, params: dict[str, Any],
                 metrics: dict[str, Any], training: dict[str, Any]):
        self.cfg = cfg
        self.features = features
        self.net = net.to(features.device).eval()
        self.params = params
        self.metrics = metrics
        self.training = training

    @classmethod
    def build_net(cls, cfg: Any, input_dims: Mapping[str, Any]) -> RewardNet:
        """The ensemble network for ``cfg`` (members, head, CNN) and the feature sizes ``input_dims``."""
        return RewardNet(cfg.members, input_dims, cfg.hidden, tanh=cls.tanh, conv=cfg.conv)

    # ------------------------------------------------------------------------------ scoring
    @abstractmethod
    def values(self, raw: torch.Tensor) -> torch.Tensor:
        """Per-frame rewards (N,) from raw member outputs (K, N)."""

    @torch.no_grad()
    def raw_outputs(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Raw member outputs (K, N) for shared inputs (N, ...)."""
        return self.net.forward_shared(inputs)

    @torch.no_grad()
    def store_outputs(self, store: EpisodeStore, cache_root: Path | None = None, block: int = 1024) -> torch.Tensor:
        """Raw member outputs (K, T) for every committed frame of ``store``, computed in blocks."""
        self.features.check_store(store)
        parts = []
        for part in iter_blocks(store.n_steps, block):
            rows = np.arange(part.start, part.stop)
            parts.append(self.raw_outputs(self.features.from_store(store, rows, cache_root)).cpu())
        return torch.cat(parts, dim=1)

    def frame_rewards(self, store: EpisodeStore, cache_root: Path | None = None) -> np.ndarray:
        """Reward of every frame (T,) of ``store``."""
        return self.values(self.store_outputs(store, cache_root)).numpy().astype(np.float32)

    def step_rewards(self, store: EpisodeStore, cache_root: Path | None = None) -> np.ndarray:
        """Per-step rewards (T,) with the next-observation convention (see the module docstring)."""
        return self.frame_rewards(store, cache_root)[next_rows(store)]

    @torch.no_grad()
    def __call__(self, obs: Mapping[str, Any]) -> np.ndarray | torch.Tensor:
        """Rewards of a batch of live observations (each key (N, ...)); a tensor batch gets a tensor back."""
        values = self.values(self.raw_outputs(self.features.from_obs(obs)))
        tensor = next((v for v in obs.values() if torch.is_tensor(v)), None)
        return values.to(tensor.device) if tensor is not None else values.cpu().numpy()

    # ------------------------------------------------------------------------------ identity
    def describe(self) -> dict[str, Any]:
        """Everything in ``model.json`` but the hash."""
        return {"kind": self.kind, "config": asdict(self.cfg), "features": self.features.state_dict(),
                "params": self.params, "metrics": self.metrics, "training": self.training}

    def weights_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, buf)
        return buf.getvalue()

    @property
    def hash(self) -> str:
        """8 hex digits over config (devices aside), normalisation/threshold and weights: names the relabelled source."""
        described = {k: v for k, v in self.describe().items() if k != "metrics"}
        config = json.loads(json.dumps(described["config"]))
        config.pop("device", None)
        config.get("features", {}).get("clip", {}).pop("device", None)
        digest = hashlib.sha256(json.dumps({**described, "config": config}, sort_keys=True, default=str).encode())
        for value in self.net.state_dict().values():
            digest.update(value.detach().cpu().numpy().tobytes())
        return digest.hexdigest()[:8]

    @property
    def source_name(self) -> str:
        return f"{self.source_prefix}_{self.hash}"

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``weights.pt`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / WEIGHTS_FILE).write_bytes(self.weights_bytes())
        (directory / MODEL_FILE).write_text(json.dumps({**self.describe(), "hash": self.hash}, indent=1, default=str))
        return directory


MODEL_KINDS: dict[str, type[FrameModel]] = {}


def register(cls: type[FrameModel]) -> type[FrameModel]:
    MODEL_KINDS[cls.kind] = cls
    return cls


def load_model(directory: str | Path, device: str = "auto") -> FrameModel:
    """Load a model saved by :meth:`FrameModel.save` (a ``reward train`` output directory)."""
    import reward_models.bt_model  # noqa: F401  (register the model kinds)
    import reward_models.success  # noqa: F401

    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: expected a trained reward model directory (with {MODEL_FILE} and "
                                f"{WEIGHTS_FILE}, written by 'robot-learning reward train'), found no {MODEL_FILE}")
    meta = json.loads(path.read_text())
    if meta.get("kind") not in MODEL_KINDS:
        raise ConfigError(f"{path}: field 'kind': expected one of {sorted(MODEL_KINDS)}, found {meta.get('kind')!r}")
    cls = MODEL_KINDS[meta["kind"]]
    cfg = build(cls.Config, meta["config"], where=str(path))
    cfg.device = cfg.features.clip.device = device
    features = FeatureExtractor.from_saved(cfg.features, meta["features"], device)
    net = cls.build_net(cfg, meta["params"]["input_dims"])
    net.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model = cls(cfg, features, net, meta["params"], meta["metrics"], meta["training"])
    if model.hash != meta.get("hash"):
        log.warning("%s: hash %s does not match the recorded %s (weights or config edited?)", path, model.hash, meta.get("hash"))
    return model
