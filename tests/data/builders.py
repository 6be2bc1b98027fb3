"""Builders for the dataset-tool tests: low-dim tasks, stores from explicit arrays, D4RL and Minari files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec


def task(observations: Mapping[str, Any], action_dim: int = 2, **changes: Any) -> TaskSpec:
    """A small TaskSpec with the given observation specs ({key: dim} for vectors, or full spec dicts)."""
    obs = {k: ({"shape": [v]} if isinstance(v, int) else v) for k, v in observations.items()}
    data = {"name": "dot", "text": "move the dot", "control_hz": 10, "max_episode_steps": 50,
            "observations": obs, "action": {"dim": action_dim, "low": -1.0, "high": 1.0}}
    return TaskSpec.from_dict({**data, **changes})


def write_store(path: Path, spec: TaskSpec, episodes: Sequence[Mapping[str, Any]],
                **writer_kwargs: Any) -> EpisodeStore:
    """A store whose episodes are given as arrays: {obs: {key: (T, ...)}, action, reward, terminal?, success?,
    meta?, extras?}; ``reward`` may be a {source: (T,)} mapping."""
    store = EpisodeStore.create(path, spec, source="test")
    with store.writer(**writer_kwargs) as w:
        for ep in episodes:
            n = len(ep["action"])
            terminal = ep.get("terminal", np.zeros(n, bool))
            rewards = ep["reward"] if isinstance(ep["reward"], Mapping) else {"env": ep["reward"]}
            w.begin(**ep.get("meta", {}))
            for t in range(n):
                w.add_step({k: v[t] for k, v in ep["obs"].items()}, ep["action"][t],
                           reward={s: float(r[t]) for s, r in rewards.items()}, terminal=bool(terminal[t]),
                           extras={k: v[t] for k, v in ep.get("extras", {}).items()} or None)
            w.end(success=ep.get("success", False))
    return store


def write_d4rl(path: Path, **arrays: np.ndarray) -> Path:
    """An HDF5 file with one dataset per keyword (D4RL's flat layout)."""
    with h5py.File(path, "w") as f:
        for key, values in arrays.items():
            f.create_dataset(key, data=values)
    return path


def _write_tree(group: h5py.Group, name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        sub = group.create_group(name)
        for k, v in value.items():
            _write_tree(sub, k, v)
    else:
        group.create_dataset(name, data=value)


def write_minari(root: Path, episodes: Mapping[int, Mapping[str, Any]], dataset_id: str = "dot/test-v0") -> Path:
    """A Minari dataset directory: data/metadata.json and data/main_data.hdf5 with episode_<id> groups.

    Each episode maps observations (an array of T+1 rows or a nested dict of them), actions, rewards,
    terminations, truncations and optional attrs (e.g. seed).
    """
    data = root / "data"
    data.mkdir(parents=True)
    total = sum(len(ep["rewards"]) for ep in episodes.values())
    (data / "metadata.json").write_text(json.dumps({"dataset_id": dataset_id, "data_format": "hdf5",
                                                    "total_episodes": len(episodes), "total_steps": total}))
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for i, ep in episodes.items():
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            g.attrs["total_steps"] = len(ep["rewards"])
            for key, value in ep.get("attrs", {}).items():
                g.attrs[key] = value
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if key in ep:
                    _write_tree(g, key, ep[key])
    return root
