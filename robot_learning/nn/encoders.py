"""Observation encoders: a dict of raw observations -> one feature vector.

- low-dimensional keys: concatenated, then normalised (dataset mean/std, frozen online);
- precomputed feature keys (e.g. CLIP embeddings stored as a low-dim key): concatenated unchanged;
- camera keys (uint8 H x W x 3): scaled to [0, 1] and passed through a small conv stack (DrQ,
  denisyarats/drq: 32 filters, 3x3, strides 2-1-1-1) and a Linear -> LayerNorm -> tanh head (SAC-AE).

Actor and critic share the conv stack the SAC-AE/DrQ way: the critic's loss trains it and the actor reads
detached conv features through its own head (:meth:`ObservationEncoder.sibling`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robot_learning.nn.normalize import Normalizer
from robot_learning.spec import TaskSpec


class ConvTrunk(nn.Module):
    """uint8 images (N, H, W, 3) -> flattened conv features (N, output_dim)."""

    def __init__(self, height: int, width: int, channels: Sequence[int], kernels: Sequence[int],
                 strides: Sequence[int]):
        super().__init__()
        if not len(channels) == len(kernels) == len(strides):
            raise ValueError(f"conv stack: expected equal numbers of channels/kernels/strides, found "
                             f"{list(channels)}/{list(kernels)}/{list(strides)}")
        layers: list[nn.Module] = []
        in_ch = 3
        for ch, k, s in zip(channels, kernels, strides):
            layers += [nn.Conv2d(in_ch, ch, k, stride=s), nn.ReLU()]
            in_ch = ch
        self.net = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.output_dim = int(self.net(torch.zeros(1, 3, height, width)).shape[1])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image.permute(0, 3, 1, 2).float() / 255.0)


class ImageHead(nn.Module):
    """Linear -> LayerNorm -> tanh over conv features (SAC-AE/DrQ encoder head)."""

    def __init__(self, in_dim: int, feature_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ObservationEncoder(nn.Module):
    """Raw observation dict -> feature vector (N, output_dim); see the module docstring."""

    def __init__(self, spec: TaskSpec, obs_keys: Sequence[str], *, feature_keys: Sequence[str] = (),
                 conv_channels: Sequence[int] = (32, 32, 32, 32), conv_kernels: Sequence[int] = (3, 3, 3, 3),
                 conv_strides: Sequence[int] = (2, 1, 1, 1), image_feature_dim: int = 50,
                 normalizer: Normalizer | None = None, convs: nn.ModuleList | None = None, detach_conv: bool = False):
        super().__init__()
        obs = spec.obs
        unknown = [k for k in feature_keys if k not in obs_keys or obs[k].is_image]
        if unknown:
            raise ValueError(f"feature_keys: expected low-dimensional keys among {list(obs_keys)}, "
                             f"found '{unknown[0]}'")
        self.image_keys = [k for k in obs_keys if obs[k].is_image]
        self.feature_keys = [k for k in obs_keys if k in feature_keys]
        self.norm_keys = [k for k in obs_keys if not obs[k].is_image and k not in feature_keys]
        self.norm_dim = sum(obs[k].shape[0] for k in self.norm_keys)
        self.normalizer = normalizer if normalizer is not None else Normalizer(self.norm_dim)
        if convs is None:
            convs = nn.ModuleList(ConvTrunk(obs[k].shape[0], obs[k].shape[1], conv_channels, conv_kernels, conv_strides)
                                  for k in self.image_keys)
        self.convs = convs
        self.heads = nn.ModuleList(ImageHead(c.output_dim, image_feature_dim) for c in convs)
        self.detach_conv = detach_conv
        self._spec, self._obs_keys, self._image_feature_dim = spec, list(obs_keys), image_feature_dim
        self.output_dim = (self.norm_dim + sum(obs[k].shape[0] for k in self.feature_keys)
                           + image_feature_dim * len(self.image_keys))

    @property
    def has_images(self) -> bool:
        return bool(self.image_keys)

    def sibling(self) -> ObservationEncoder:
        """An encoder sharing this one's normaliser and conv stacks, with its own heads and detached conv features."""
        return ObservationEncoder(self._spec, self._obs_keys, feature_keys=self.feature_keys,
                                  image_feature_dim=self._image_feature_dim, normalizer=self.normalizer,
                                  convs=self.convs, detach_conv=True).to(self.normalizer.mean.device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters this encoder's owner should optimise: everything, or only its heads when the conv is shared."""
        return list(self.heads.parameters()) if self.detach_conv else list(self.parameters())

    def low_dim(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The concatenated (unnormalised) low-dimensional keys that the normaliser sees, (N, norm_dim)."""
        parts = [obs[k].float() for k in self.norm_keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        if self.norm_keys:
            parts.append(self.normalizer(self.low_dim(obs)))
        parts += [obs[k].float() for k in self.feature_keys]
        for key, conv, head in zip(self.image_keys, self.convs, self.heads):
            h = conv(obs[key])
            parts.append(head(h.detach() if self.detach_conv else h))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
