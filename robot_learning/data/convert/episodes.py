"""The converters' common output path: source episodes, checked against the task, into a new store.

A format module (d4rl, minari, mcap) turns its input into :class:`SourceEpisode` objects; this module
checks each one (naming the input and the field on failure), writes it through the
:class:`~robot_learning.data.writer.EpisodeWriter` with reward source ``env`` and meta fields
``source``/``source_episode``, and records the provenance of the ``env`` rewards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from robot_learning.data.store import StoreError
from robot_learning.data.tools.building import bulk_writer, staged_store
from robot_learning.spec import SpecError, TaskSpec

log = logging.getLogger(__name__)


@dataclass
class ConvertOptions:
    """Options every converter reads (configs/dataset_convert.yaml documents each)."""

    overwrite: bool = False
    obs_map: dict[str, Any] | None = None
    success: Literal["terminal", "reward", "none"] = "terminal"
    next_obs_tolerance: float = 1e-6
    topics_config: str | None = None


@dataclass
class SourceEpisode:
    """One episode read from an input, in task units; ``where`` names it in error messages."""

    where: str
    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.action)


#: How an episode's ``success`` meta field is decided from its data.
SUCCESS_RULES: dict[str, Callable[[SourceEpisode], bool]] = {
    "terminal": lambda ep: bool(ep.terminal[-1]),
    "reward": lambda ep: bool(np.any(ep.reward > 0)),
    "none": lambda ep: False,
}


def check_episode(ep: SourceEpisode, spec: TaskSpec) -> None:
    """Raise SpecError naming ``ep.where`` unless every field has the task's shape and finite values."""
    n = len(ep.action)
    if n == 0:
        raise SpecError(f"{ep.where}: field 'actions': expected at least one step, found none")
    spec.validate_observation(ep.obs, batched=True, where=ep.where)
    spec.validate_action(ep.action, batched=True, where=ep.where)
    for name, values in (("rewards", ep.reward), ("terminals", ep.terminal), *ep.obs.items()):
        if len(values) != n:
            raise SpecError(f"{ep.where}: field '{name}': expected {n} rows (one per action), found {len(values)}")
    if not np.all(np.isfinite(ep.reward)):
        raise SpecError(f"{ep.where}: field 'rewards': expected finite values, found "
                        f"{int(np.size(ep.reward) - np.isfinite(ep.reward).sum())} NaN/inf value(s)")


def write_episodes(episodes: Iterable[SourceEpisode], spec: TaskSpec, out: Path, *, source: str,
                   provenance: Mapping[str, Any], options: ConvertOptions, total: int | None = None) -> Path:
    """Check and write ``episodes`` into a new store at ``out`` (replaced only on success); returns ``out``."""
    rule = SUCCESS_RULES[options.success]
    low, high = spec.action.low_array, spec.action.high_array
    outside = 0
    with staged_store(out, spec, source=source, overwrite=options.overwrite) as store:
        with bulk_writer(store) as writer:
            for ep in tqdm(episodes, total=total, unit="episode", desc=f"convert {Path(source).name}"):
                check_episode(ep, spec)
                outside += int(np.sum((ep.action < low) | (ep.action > high)))
                writer.begin(**ep.meta)
                for t in range(len(ep)):
                    writer.add_step({k: v[t] for k, v in ep.obs.items()}, ep.action[t], reward=float(ep.reward[t]),
                                    terminal=bool(ep.terminal[t]))
                writer.end(success=rule(ep))
        if store.n_episodes == 0:
            raise StoreError(f"{source}: expected at least one episode, found none")
        store.set_reward_provenance("env", {"kind": "env", "converted_from": source, **provenance})
    if outside:
        log.warning("%s: %d action value(s) lie outside the task's action limits [%s, %s]", source, outside,
                    spec.action.low, spec.action.high)
    return out
