"""Mixed precision: matrix products of the hidden layers in bfloat16; parameters, optimiser state, every
network's output layer, the losses and the backward pass's float32 parts in float32.

Why: with bfloat16 dot-product instructions (AVX512-BF16 or AMX on CPUs, tensor cores on GPUs) a 256x256
matrix product runs about 4x faster than in float32 on the development CPU, and the matrix products are most
of an update (benchmarks/gemm_floor.py). Why the output layers stay float32: bfloat16 keeps 8 significant
bits, so a Q-value of 150 would be resolved to 0.5 (TD errors are often smaller) and action means / log-stds
to ~0.4%, which log-probabilities and tanh squashing amplify. The cost of a float32 output layer is one
(N, width) cast and a product with 1-12 columns.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

#: ``fp32``: everything in float32. ``bf16``: mixed precision as described in the module docstring.
PRECISIONS = ("fp32", "bf16")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16 matrix products (elsewhere bfloat16 is emulated and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


def check_precision(precision: str) -> None:
    """Raise ValueError naming the field unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, found '{precision}'")


def mixed_precision(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a forward pass and its losses run in: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def full_precision(device: torch.device) -> AbstractContextManager:
    """Autocast switched off: for output layers and for backward passes.

    A backward pass must run outside autocast: on the CPU it runs in the calling thread, where autocast would
    also cast the float32 parts of the graph (the output layers' gradients) to bfloat16.
    """
    return torch.autocast(device.type, enabled=False)


def warn_if_slow(device: torch.device, precision: str) -> None:
    """Log a warning when ``bf16`` is asked for on a device without native bfloat16 matrix products."""
    if precision == "bf16" and not bf16_is_fast(device):
        log.warning("precision=bf16 on %s: this device has no native bfloat16 matrix products (CPU: AVX512-BF16 "
                    "or AMX; GPU: Ampere or newer); training is correct but likely slower than fp32", device)


class OutputLinear(nn.Linear):
    """The last Linear of a network: computed in float32 even inside bfloat16 autocast (see the module docstring).

    Same parameters and state-dict keys as ``nn.Linear``; outside autocast it is an ``nn.Linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return F.linear(x, self.weight, self.bias)
        with full_precision(x.device):
            return F.linear(x.float(), self.weight, self.bias)
