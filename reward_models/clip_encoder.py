"""open_clip image/text encoders built from a config, with no download at run time.

Any open_clip architecture works by name (``open_clip.list_models()``), plus custom architectures from an
open_clip model-config JSON (``model_config``; the architecture is named after the file stem). Weights
come from a local checkpoint file or a pretrained tag; a tag must already be in the local cache unless
``allow_download`` is set, so a run never fetches weights by surprise. Loading is strict: a checkpoint
made for another architecture is a ConfigError naming the file, the architecture and the mismatches.

Images are preprocessed on the device as one batched tensor op (resize the short side, centre crop,
normalise with the weights' mean/std), not per image through PIL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robot_learning.config import ConfigError
from robot_learning.data.tensors import resolve_device

log = logging.getLogger(__name__)


@dataclass
class ClipConfig:
    """Which open_clip model to load and how to run it."""

    # open_clip architecture name (open_clip.list_models(), e.g. ViT-B-32), or the file stem of model_config.
    arch: str = "ViT-B-32"
    # Weights: a local checkpoint file, or an open_clip pretrained tag (e.g. openai) found in the local cache.
    pretrained: str | None = "openai"
    # Optional open_clip model-config JSON (embed_dim, vision_cfg, text_cfg) defining a custom architecture.
    model_config: str | None = None
    # Let open_clip download a pretrained tag missing from the cache (off: nothing downloads at run time).
    allow_download: bool = False
    # Cache directory open_clip looks tags up in (null: open_clip's / Hugging Face's default).
    cache_dir: str | None = None
    # Frames per forward pass of the image tower.
    batch_size: int = 64
    # auto = CUDA when present, else CPU.
    device: str = "auto"


def _register_model_config(cfg: ClipConfig) -> None:
    import open_clip

    path = Path(cfg.model_config).expanduser()
    if not path.is_file():
        raise ConfigError(f"clip.model_config: expected an open_clip model-config JSON file, found no file at {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: expected an open_clip model config (JSON), found invalid JSON ({e})") from None
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in data]
    if missing:
        raise ConfigError(f"{path}: field '{missing[0]}': expected it in an open_clip model config, found it missing")
    if path.stem != cfg.arch:
        raise ConfigError(f"clip.arch: expected '{path.stem}' (the architecture model_config={path} defines), "
                          f"found '{cfg.arch}'")
    open_clip.add_model_config(path)


def _cached_tag_file(tag_cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """The local file of a pretrained tag if it is already cached (open_clip's URL or Hugging Face cache)."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    url = tag_cfg.get("url", "")
    if url:
        target = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def resolve_weights(cfg: ClipConfig) -> tuple[str, dict[str, Any]]:
    """(checkpoint file, preprocessing overrides of the tag) for ``cfg.pretrained``; never downloads unless allowed."""
    import open_clip

    if not cfg.pretrained:
        raise ConfigError(f"clip.pretrained: expected a local checkpoint file or a pretrained tag of '{cfg.arch}', "
                          "found nothing (random weights give meaningless rewards)")
    path = Path(cfg.pretrained).expanduser()
    if path.is_file():
        return str(path), {}
    tag_cfg = open_clip.get_pretrained_cfg(cfg.arch, cfg.pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(cfg.arch)
        raise ConfigError(f"clip.pretrained: expected a checkpoint file or one of the tags {tags} of '{cfg.arch}', "
                          f"found '{cfg.pretrained}' (no such file or tag)")
    overrides = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    if cfg.allow_download:
        return open_clip.download_pretrained(tag_cfg, cache_dir=cfg.cache_dir), overrides
    cached = _cached_tag_file(tag_cfg, cfg.cache_dir)
    if cached is None:
        raise ConfigError(f"clip.pretrained: tag '{cfg.pretrained}' of '{cfg.arch}' is not in the local cache and "
                          "downloads are off (clip.allow_download=false): pass a local checkpoint file as "
                          "clip.pretrained=<path>, or fetch the tag once with clip.allow_download=true")
    return cached, overrides


@lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    """SHA-256 of a file (hex), streamed; identifies weights in cache keys and provenance."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch_summary(error: Exception) -> str:
    """The informative lines of a failed strict load (size mismatches, missing/unexpected keys)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    details = [ln for ln in lines if ln.startswith(("size mismatch", "Missing key", "Unexpected key"))]
    text = "; ".join(details or lines[:2]) or type(error).__name__
    return text if len(text) < 600 else text[:600] + " ..."


class ClipEncoder:
    """A loaded open_clip model: normalised image and text embeddings as float32 numpy arrays."""

    def __init__(self, cfg: ClipConfig):
        import open_clip

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.model_config:
            _register_model_config(cfg)
        if cfg.arch not in open_clip.list_models():
            known = open_clip.list_models()
            raise ConfigError(f"clip.arch: expected an open_clip architecture ({len(known)} known, e.g. "
                              f"{known[:4]}; or model_config=<json> for a custom one), found '{cfg.arch}'")
        self.weights, overrides = resolve_weights(cfg)
        try:
            model = open_clip.create_model(cfg.arch, pretrained=self.weights, device=self.device,
                                           force_preprocess_cfg=overrides or None)
        except (RuntimeError, AssertionError, KeyError, ValueError) as e:
            raise ConfigError(f"{self.weights}: expected a checkpoint of open_clip architecture '{cfg.arch}', found "
                              f"one that does not fit it ({_mismatch_summary(e)})") from None
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(cfg.arch)
        pp = model.visual.preprocess_cfg
        size = pp["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(pp["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(pp["std"], device=self.device).view(1, 3, 1, 1)
        self.interpolation = "bicubic" if pp.get("interpolation", "bicubic") == "bicubic" else "bilinear"
        self.embed_dim = int(self.encode_texts(["a"]).shape[1])
        self.logit_scale = float(model.logit_scale.exp().item())
        log.info("open_clip %s loaded from %s on %s (image %s, embedding %d)", cfg.arch, self.weights, self.device,
                 self.image_size, self.embed_dim)

    def identity(self) -> dict[str, Any]:
        """What determines the embeddings: architecture and weights (hash), for cache keys and provenance."""
        ident = {"arch": self.cfg.arch, "pretrained": self.cfg.pretrained, "weights_sha256": file_sha256(self.weights)[:16]}
        if self.cfg.model_config:
            ident["model_config_sha256"] = file_sha256(str(Path(self.cfg.model_config).expanduser()))[:16]
        return ident

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S): short side resized, centre crop."""
        x = images.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        th, tw = self.image_size
        h, w = x.shape[-2:]
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, align_corners=False, antialias=True).clamp_(0, 1)
        top, left = (nh - th) // 2, (nw - tw) // 2
        x = x[..., top:top + th, left:left + tw]
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """L2-normalised image embeddings (N, D) of uint8 frames (N, H, W, 3), in batches of ``batch_size``."""
        images = torch.as_tensor(images)
        out = []
        for start in range(0, len(images), self.cfg.batch_size):
            x = self.preprocess(images[start:start + self.cfg.batch_size])
            out.append(self.model.encode_image(x, normalize=True).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings (M, D)."""
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens, normalize=True).float().cpu().numpy()
