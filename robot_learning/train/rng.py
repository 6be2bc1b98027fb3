"""Random streams of a run: seeding, and capturing/restoring every stream for exact resume.

A run draws from torch's global generators (CPU and CUDA: policy sampling, dropout), numpy's and
python's global generators (libraries), and three streams it owns: ``device`` (batch indices, on the
training device), ``host`` (host-side decisions such as how many rows of a batch are online) and
``numpy`` (uniformly random warm-up actions). A checkpoint stores the state of all of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (e.g. the run seed and an env-step counter)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint32)[0] >> 1)


@dataclass
class RunStreams:
    """The random streams a run owns (see the module docstring)."""

    device: torch.Generator
    host: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def create(cls, seed: int, device: torch.device) -> RunStreams:
        return cls(device=torch.Generator(device=device).manual_seed(derived_seed(seed, 1)),
                   host=torch.Generator().manual_seed(derived_seed(seed, 2)),
                   numpy=np.random.default_rng([seed, 3]))


def capture(streams: RunStreams) -> dict[str, Any]:
    """Every random stream's state (tensors and plain Python values: loadable with weights_only)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_global": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
        "device": streams.device.get_state(),
        "host": streams.host.get_state(),
        "numpy": streams.numpy.bit_generator.state,
    }


def restore(state: dict[str, Any], streams: RunStreams) -> None:
    """Put every random stream back where :func:`capture` found it."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy_global"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    streams.device.set_state(state["device"])
    streams.host.set_state(state["host"])
    streams.numpy.bit_generator.state = state["numpy"]
