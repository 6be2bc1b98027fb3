"""The deployable policy: raw observations in, task-unit actions out, everything in between in one module."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from robot_learning.nn.encoders import ObservationEncoder
from robot_learning.nn.normalize import ActionScaler


class DeterministicPolicy(nn.Module):
    """obs dict -> encoder (normalisation, CNN) -> actor.mode (squashing) -> ActionScaler (task units).

    This is what ``Algorithm.export_actor`` returns and what the ONNX exporter traces; ``obs_keys`` lists the
    inputs it reads.
    """

    def __init__(self, encoder: ObservationEncoder, actor: nn.Module, scaler: ActionScaler):
        super().__init__()
        self.encoder = encoder
        self.actor = actor
        self.scaler = scaler
        self.obs_keys = [*encoder.norm_keys, *encoder.feature_keys, *encoder.image_keys]

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.scaler.from_unit(self.actor.mode(self.encoder(obs)))
