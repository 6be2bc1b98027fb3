"""Batched ensembles for reward models: every member in one forward pass, no Python loop over members.

- The heads are ``robot_learning.nn.ensemble`` MLPs: (K, in, out) weights, one ``baddbmm`` per layer.
- :class:`EnsembleConv` is RL-VLM-F's image CNN (kernels [5, 3, 3, 3], channels [16, 32, 64, 128],
  strides [3, 2, 2, 2], ReLU, no padding) for K members at once: member k's weights are group k of
  grouped convolutions over the K images stacked along channels.
- :class:`RewardNet` maps per-member inputs (K, N, ...) to (K, N) outputs: tanh rewards in (-1, 1) for
  Bradley-Terry models (as in RL-VLM-F), raw logits for the success classifier.

Inputs carry a member axis so that each member can train on its own minibatch; at inference the
same batch is broadcast to every member with ``expand`` (no copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from robot_learning.nn.ensemble import ensemble_mlp


@dataclass
class ConvConfig:
    """RL-VLM-F's reward CNN (conv_net.py with hidden_sizes=[] for MetaWorld)."""

    # Output channels of each conv layer.
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    # Kernel size of each conv layer.
    kernels: list[int] = field(default_factory=lambda: [5, 3, 3, 3])
    # Stride of each conv layer.
    strides: list[int] = field(default_factory=lambda: [3, 2, 2, 2])


class EnsembleConv(nn.Module):
    """K copies of a conv stack as grouped convolutions: uint8 images (K, N, H, W, 3) -> features (K, N, F)."""

    def __init__(self, members: int, image_shape: Sequence[int], cfg: ConvConfig):
        super().__init__()
        if not len(cfg.channels) == len(cfg.kernels) == len(cfg.strides):
            raise ValueError(f"conv: expected as many channels as kernels and strides, found {cfg}")
        self.members = members
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, k, s in zip(cfg.channels, cfg.kernels, cfg.strides):
            layers += [nn.Conv2d(c_in * members, c_out * members, k, stride=s, groups=members), nn.ReLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        h, w = int(image_shape[0]), int(image_shape[1])
        with torch.no_grad():
            out = self.net(torch.zeros(1, 3 * members, h, w))
        if out.shape[-1] < 1 or out.shape[-2] < 1:
            raise ValueError(f"conv: a {h}x{w} image shrinks to nothing through {cfg}")
        self.out_dim = int(out.shape[1] // members * out.shape[2] * out.shape[3])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        k, n, h, w, c = images.shape
        x = images.permute(1, 0, 4, 2, 3).reshape(n, k * c, h, w).float().div_(255.0)
        x = self.net(x)
        return x.reshape(n, k, -1).transpose(0, 1)


class RewardNet(nn.Module):
    """Per-member scalar outputs from an image (raw frame or embedding) and optional state.

    ``dims`` has ``image`` (H, W, 3) or ``embedding`` (D,), and ``state`` (S, 0 = none); the head is an
    ensemble MLP with ``hidden`` layers; ``tanh`` bounds the output to (-1, 1).
    """

    def __init__(self, members: int, dims: Mapping[str, object], hidden: Sequence[int], tanh: bool,
                 conv: ConvConfig | None = None):
        super().__init__()
        self.members = members
        self.tanh = tanh
        self.conv = EnsembleConv(members, dims["image"], conv or ConvConfig()) if "image" in dims else None
        width = (self.conv.out_dim if self.conv is not None else int(dims["embedding"])) + int(dims.get("state", 0))
        self.head = ensemble_mlp(members, width, list(hidden), 1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Inputs with a member axis (K, N, ...) -> outputs (K, N)."""
        parts = [self.conv(inputs["image"]) if self.conv is not None else inputs["embedding"].float()]
        if "state" in inputs:
            parts.append(inputs["state"].float())
        out = self.head(torch.cat(parts, dim=-1)).squeeze(-1)
        return torch.tanh(out) if self.tanh else out

    def forward_shared(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The same batch (N, ...) through every member -> (K, N)."""
        return self(({k: v.unsqueeze(0).expand(self.members, *v.shape) for k, v in inputs.items()}))
