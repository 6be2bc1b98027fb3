"""The labeler contract: answer "which of two segments makes more progress on <task text>?" for a batch.

A query is a pair of segments of one store, each given by its first global step index, with a common
length (``segment=1``: single observations, as in RL-VLM-F). An answer is a choice in RL-VLM-F's
encoding (0: the first, 1: the second, -1: can't tell) with the labeler's confidence in it (its
probability of being right, in [0, 1]). Labelers are registered by name and built from their config
dataclass; ``provenance()`` says what produced the labels (stored with every labelling run).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from robot_learning.config import ConfigError, asdict, build
from robot_learning.data.store import EpisodeStore

FIRST, SECOND, CANT_TELL = 0, 1, -1


class LabelerError(ConfigError):
    """A labeler could not produce an answer (unreachable endpoint, unusable reply after retries).

    A ConfigError subclass so that the CLI prints it as one line: the usual cause is a wrong endpoint,
    model, key or prompt setting.
    """


@dataclass(frozen=True)
class Pairs:
    """Segment pairs: first global step of each segment (N,) and the common segment length."""

    first: np.ndarray
    second: np.ndarray
    length: int = 1

    def __len__(self) -> int:
        return int(len(self.first))

    def __getitem__(self, index: slice | np.ndarray) -> Pairs:
        return Pairs(self.first[index], self.second[index], self.length)

    def rows(self, which: str) -> np.ndarray:
        """Global step indices (N, length) of the ``first`` or ``second`` segments."""
        return getattr(self, which)[:, None] + np.arange(self.length)


@dataclass(frozen=True)
class Labels:
    """Answers to a batch of queries: choice (N,) int8 in {0, 1, -1} and confidence (N,) float32."""

    choice: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return int(len(self.choice))


def compare(first: np.ndarray, second: np.ndarray, margin: float) -> np.ndarray:
    """Choice from two segment scores: the higher one, or can't tell when they are within ``margin``."""
    diff = np.asarray(second, np.float64) - np.asarray(first, np.float64)
    return np.where(diff > margin, SECOND, np.where(diff < -margin, FIRST, CANT_TELL)).astype(np.int8)


class Labeler(ABC):
    """Base class: built from its config, bound to the store it labels and a work directory for caches."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, cfg: Any, store: EpisodeStore, workdir: Path):
        self.cfg = cfg
        self.store = store
        self.workdir = Path(workdir)

    @abstractmethod
    def label(self, pairs: Pairs) -> Labels:
        """Answer every query of ``pairs``."""

    def usage(self) -> dict[str, int]:
        """Cost counters of the labeler so far (e.g. HTTP requests and cache hits); {} when free."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """Labeler name and config (no secrets), stored with the labels it produced."""
        return {"labeler": self.name, "config": asdict(self.cfg)}


LABELERS: dict[str, type[Labeler]] = {}


def register(cls: type[Labeler]) -> type[Labeler]:
    """Class decorator: make ``cls`` buildable as ``labeler=<cls.name>``."""
    LABELERS[cls.name] = cls
    return cls


def build_labeler(node: Mapping[str, Any], store: EpisodeStore, workdir: Path, where: str = "labeler") -> Labeler:
    """The labeler a config node names (``name:`` plus that labeler's fields), bound to ``store``."""
    import reward_models.labelers  # noqa: F401  (imports every labeler module, filling the registry)

    data = dict(node)
    name = data.pop("name", None)
    if name not in LABELERS:
        raise ConfigError(f"{where}.name: expected one of {sorted(LABELERS)}, found {name!r}")
    cls = LABELERS[name]
    return cls(build(cls.Config, data, where=where), store, workdir)
