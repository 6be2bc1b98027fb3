"""What reward models see of an observation: a camera frame (raw, or as a frozen CLIP embedding) plus optional state.

A :class:`FeatureExtractor` turns either stored steps (global row indices of a store) or live observation
dicts (online fine-tuning) into the same input tensors, so a model trained offline scores online
observations identically. CLIP embeddings of stored frames are computed once per (store, camera,
encoder) and kept on disk by :class:`EmbeddingCache`; low-dim state is standardised with statistics
fixed when the model is trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from robot_learning.data.store import EpisodeStore
from robot_learning.data.tensors import resolve_device
from robot_learning.spec import SpecError
from reward_models.clip_encoder import ClipConfig, ClipEncoder
from reward_models.frames import camera_key, iter_blocks, lowdim_keys, matches_prefix, read_rows, store_fingerprint

log = logging.getLogger(__name__)


@dataclass
class FeatureConfig:
    """Inputs of a reward model or success classifier."""

    # clip = frozen open_clip image embeddings (cached per frame); cnn = raw frames for a CNN trained end to end.
    image: Literal["clip", "cnn"] = "cnn"
    # Camera observation key; null = the task's first camera.
    camera: str | None = None
    # Low-dim observation keys appended to the image features (standardised); [] = images only.
    lowdim_keys: list[str] = field(default_factory=list)
    # The open_clip model when image=clip.
    clip: ClipConfig = field(default_factory=ClipConfig)


class EmbeddingCache:
    """Per-frame CLIP embeddings of one camera of one store, computed once, on disk, grown as the store grows.

    Layout: ``<root>/<camera>_<encoder id>/{meta.json, emb.npy (T, D) float32, filled.npy (T,) bool}``.
    ``filled`` is written (atomically) only after the embeddings it marks are flushed, so a killed run
    loses at most the block in flight. A cache made for a different store at the same path is rebuilt.
    """

    def __init__(self, root: Path, store: EpisodeStore, camera: str, encoder: ClipEncoder, block: int = 512):
        ident = {"camera": camera, **encoder.identity()}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = Path(root) / f"{camera}_{key}"
        self.store, self.camera, self.encoder, self.block = store, camera, encoder, block
        meta_path = self.dir / "meta.json"
        if meta_path.exists() and not matches_prefix(store, json.loads(meta_path.read_text())["store"]):
            log.warning("%s: made for another store at %s; rebuilding", self.dir, store.path)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        n = store.n_steps
        emb_path, filled_path = self.dir / "emb.npy", self.dir / "filled.npy"
        if emb_path.exists():
            old = np.load(emb_path, mmap_mode="r")
            old_filled = np.load(filled_path) if filled_path.exists() else np.zeros(len(old), bool)
        else:
            old, old_filled = np.zeros((0, encoder.embed_dim), np.float32), np.zeros(0, bool)
        if len(old) < n:
            grown = np.lib.format.open_memmap(self.dir / "emb.tmp.npy", mode="w+", dtype=np.float32,
                                              shape=(n, encoder.embed_dim))
            grown[:len(old)] = old
            grown.flush()
            del grown, old
            os.replace(self.dir / "emb.tmp.npy", emb_path)
            filled = np.zeros(n, bool)
            filled[:len(old_filled)] = old_filled
            self._save_filled(filled)
        self.emb = np.load(emb_path, mmap_mode="r+")
        self.filled = np.load(filled_path)
        meta_path.write_text(json.dumps({"encoder": ident, "store": store_fingerprint(store)}, indent=1))

    def _save_filled(self, filled: np.ndarray) -> None:
        tmp = self.dir / "filled.tmp.npy"
        np.save(tmp, filled)
        os.replace(tmp, self.dir / "filled.npy")

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of global step indices ``rows``, computing (and caching) the missing ones."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = np.unique(rows[~self.filled[rows]])
        if len(missing):
            bar = tqdm(total=len(missing), desc=f"clip embeddings [{self.camera}]", unit="frame",
                       disable=len(missing) < 4 * self.block, leave=False)
            for part in iter_blocks(len(missing), self.block):
                block = missing[part]
                self.emb[block] = self.encoder.encode_images(read_rows(self.store, f"obs/{self.camera}", block))
                self.emb.flush()
                self.filled[block] = True
                self._save_filled(self.filled)
                bar.update(len(block))
            bar.close()
        return np.asarray(self.emb[rows])


class FeatureExtractor:
    """Model inputs from stored steps or live observations: ``{"image"|"embedding": ..., "state": ...}``.

    ``image`` is uint8 (N, H, W, 3) (the CNN scales it), ``embedding`` float32 (N, D), ``state`` float32
    (N, S) standardised with ``state_mean``/``state_std`` (fit on the training store by :meth:`for_store`).
    """

    def __init__(self, cfg: FeatureConfig, camera: str, device: str | torch.device = "auto",
                 state_mean: np.ndarray | None = None, state_std: np.ndarray | None = None):
        self.cfg = cfg
        self.camera = camera
        self.device = resolve_device(device)
        self.encoder = ClipEncoder(cfg.clip) if cfg.image == "clip" else None
        self.state_mean = None if state_mean is None else np.asarray(state_mean, np.float32)
        self.state_std = None if state_std is None else np.asarray(state_std, np.float32)
        self._caches: dict[str, EmbeddingCache] = {}

    @classmethod
    def for_store(cls, cfg: FeatureConfig, store: EpisodeStore, device: str | torch.device = "auto",
                  needed_by: str = "the reward model") -> FeatureExtractor:
        """An extractor for ``store``'s task (camera and low-dim keys checked) with state statistics fit on it."""
        camera = camera_key(store, cfg.camera, needed_by)
        lowdim_keys(store, cfg.lowdim_keys, needed_by)
        fx = cls(cfg, camera, device)
        if cfg.lowdim_keys:
            state = np.concatenate([store.read(f"obs/{k}").reshape(store.n_steps, -1) for k in cfg.lowdim_keys], axis=1)
            fx.state_mean, fx.state_std = state.mean(0), state.std(0) + 1e-6
        return fx

    def state_dict(self) -> dict[str, Any]:
        """What to save with a model to rebuild this extractor (see :meth:`from_saved`)."""
        return {"camera": self.camera,
                "state_mean": None if self.state_mean is None else self.state_mean.tolist(),
                "state_std": None if self.state_std is None else self.state_std.tolist()}

    @classmethod
    def from_saved(cls, cfg: FeatureConfig, saved: Mapping[str, Any], device: str | torch.device = "auto") -> FeatureExtractor:
        return cls(cfg, saved["camera"], device, saved.get("state_mean"), saved.get("state_std"))

    def check_store(self, store: EpisodeStore) -> None:
        """Fail clearly if ``store``'s task lacks the camera or low-dim keys this extractor reads."""
        camera_key(store, self.camera, "the reward model")
        lowdim_keys(store, self.cfg.lowdim_keys, "the reward model")

    def _state(self, parts: list[np.ndarray]) -> torch.Tensor:
        state = np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1).astype(np.float32)
        return torch.from_numpy((state - self.state_mean) / self.state_std).to(self.device)

    def from_store(self, store: EpisodeStore, rows: np.ndarray, cache_root: Path | None = None) -> dict[str, torch.Tensor]:
        """Inputs for global step indices ``rows`` (N,) of ``store``; CLIP embeddings go through the cache at ``cache_root``."""
        rows = np.asarray(rows, dtype=np.int64)
        out: dict[str, torch.Tensor] = {}
        if self.encoder is not None:
            if cache_root is None:
                emb = self.encoder.encode_images(read_rows(store, f"obs/{self.camera}", rows))
            else:
                key = str(store.path.resolve())
                if key not in self._caches:
                    self._caches[key] = EmbeddingCache(cache_root, store, self.camera, self.encoder)
                emb = self._caches[key].rows(rows)
            out["embedding"] = torch.from_numpy(np.ascontiguousarray(emb)).to(self.device)
        else:
            out["image"] = torch.from_numpy(read_rows(store, f"obs/{self.camera}", rows)).to(self.device)
        if self.cfg.lowdim_keys:
            out["state"] = self._state([read_rows(store, f"obs/{k}", rows) for k in self.cfg.lowdim_keys])
        return out

    def from_obs(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Inputs for a batch of live observations (each key (N, ...), numpy or torch)."""
        if self.camera not in obs:
            raise SpecError(f"observation batch: key '{self.camera}': expected camera frames (N, H, W, 3) uint8, "
                            f"found keys {sorted(obs)}")
        images = torch.from_numpy(_numpy(obs[self.camera]))
        out: dict[str, torch.Tensor] = {}
        if self.encoder is not None:
            out["embedding"] = torch.from_numpy(self.encoder.encode_images(images)).to(self.device)
        else:
            out["image"] = images.to(self.device)
        if self.cfg.lowdim_keys:
            missing = [k for k in self.cfg.lowdim_keys if k not in obs]
            if missing:
                raise SpecError(f"observation batch: key '{missing[0]}': expected it (the model reads "
                                f"{self.cfg.lowdim_keys}), found keys {sorted(obs)}")
            out["state"] = self._state([_numpy(obs[k]) for k in self.cfg.lowdim_keys])
        return out

    def input_dims(self, image_shape: tuple[int, ...]) -> dict[str, Any]:
        """Network input sizes: the frame shape (H, W, 3) or the embedding width, and the state width."""
        dims: dict[str, Any] = {"state": 0 if self.state_mean is None else int(self.state_mean.shape[0])}
        if self.encoder is not None:
            dims["embedding"] = self.encoder.embed_dim
        else:
            dims["image"] = tuple(image_shape)
        return dims


def _numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like or (any-device) tensor."""
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
