"""Tiny exported policies for deployment tests: files that behave in a known way, through the real exporter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robot_learning.export.onnx_export import export_actor_onnx
from robot_learning.spec import TaskSpec


class ConstantActor(nn.Module):
    """Outputs ``value`` whatever it observes (it reads every key, so the graph keeps its inputs)."""

    def __init__(self, keys: Sequence[str], value: Sequence[float]):
        super().__init__()
        self.keys = list(keys)
        self.register_buffer("value", torch.tensor(value, dtype=torch.float32))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        zero = sum(obs[k].float().flatten(1).sum(1, keepdim=True) for k in self.keys) * 0.0
        return self.value.expand(zero.shape[0], -1) + zero


def constant_policy(spec: TaskSpec, value: Sequence[float], path: Path, keys: Sequence[str] | None = None) -> Path:
    """An ONNX policy file for ``spec`` whose action is always ``value`` (possibly beyond the task's limits)."""
    keys = list(keys or spec.low_dim_keys)
    rng = np.random.default_rng(0)
    parity = {k: rng.normal(size=(4, *spec.obs[k].shape)).astype(np.float32) for k in keys}
    export_actor_onnx(ConstantActor(keys, value), spec, keys, path, parity_obs=parity, algorithm="constant")
    return path
