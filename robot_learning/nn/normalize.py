"""Observation normalisation and action scaling as modules, so they travel inside checkpoints and the ONNX graph."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalizer(nn.Module):
    """x -> (x - mean) / std with buffers fitted once on the dataset and frozen afterwards.

    Until :meth:`fit` is called it is the identity (mean 0, std 1), which is also what an algorithm without
    observation normalisation keeps.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float) -> None:
        """Set mean/std from samples ``x`` (N, dim); std gets ``eps`` added (CORL compute_mean_std)."""
        x = x.to(torch.float64)
        self.mean.copy_(x.mean(0).to(self.mean))
        self.std.copy_((x.std(0, unbiased=False) + eps).to(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


class ActionScaler(nn.Module):
    """Maps task-unit actions within [low, high] to [-1, 1] and back (per dimension, affine)."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        super().__init__()
        low_t = torch.as_tensor(low, dtype=torch.float32)
        high_t = torch.as_tensor(high, dtype=torch.float32)
        if low_t.shape != high_t.shape or not bool((high_t > low_t).all()):
            raise ValueError(f"action limits: expected low < high per dimension, found low={list(low)} "
                             f"high={list(high)}")
        self.register_buffer("center", (high_t + low_t) / 2)
        self.register_buffer("half_range", (high_t - low_t) / 2)

    def to_unit(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.center) / self.half_range

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        return unit * self.half_range + self.center
