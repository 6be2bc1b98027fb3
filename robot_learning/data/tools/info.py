"""Summarise an episode store.

    robot-learning dataset info data/maze.zarr [json=true] [reference=data/maze_replay.zarr]

Shows episodes and steps, the episode-length distribution, the return distribution of every reward
source (with its label coverage and provenance), the success rate, per-key statistics (from the store's
running statistics), the size on disk per array, and the dataset quality measures TQ and SACo
(robot_learning.data.quality) with what each was normalised by.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

from robot_learning.data.quality import DEFAULT_GRID_POINTS, episode_returns, measure
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.common import console, disk_usage, human_bytes, load_config, require


@dataclass
class InfoConfig:
    """configs/dataset_info.yaml."""

    path: str | None = None
    json: bool = False
    reward: str | None = None
    reference: str | None = None
    state_keys: list[str] | None = None
    grid_points: int = DEFAULT_GRID_POINTS


def describe(x: np.ndarray) -> dict[str, float | int | None]:
    """count / mean / std / min / median / max of ``x`` (None when empty)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {"count": len(x), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
            "median": float(np.median(x)), "max": float(x.max())}


def _storage(store: EpisodeStore) -> dict[str, Any]:
    arrays = {}
    for name, a in store.data_arrays().items():
        raw = store.n_steps * a.dtype.itemsize * int(np.prod(a.shape[1:]))
        stored = disk_usage(store.path / "data" / name)
        arrays[name] = {"stored_bytes": stored, "raw_bytes": raw, "ratio": raw / stored if stored else None}
    return {"total_bytes": disk_usage(store.path), "arrays": arrays}


def summarize(store: EpisodeStore, reference: EpisodeStore | None = None, reward: str | None = None,
              state_keys: Sequence[str] | None = None, grid_points: int = DEFAULT_GRID_POINTS) -> dict[str, Any]:
    """Everything ``dataset info`` shows, as plain JSON-ready data."""
    ends = store.episode_ends
    meta = store.episode_meta()
    success = meta.get("success")
    rewards = {}
    for source in store.reward_sources:
        r = store.reward(source)
        returns = episode_returns(r, ends)
        rewards[source] = {
            "coverage": float(np.isfinite(r).mean()) if len(r) else None,
            "labelled_episodes": int(np.isfinite(returns).sum()),
            "returns": describe(returns[np.isfinite(returns)]),
            "provenance": store.reward_provenance(source),
        }
    attrs = store.attrs
    return {
        "path": str(store.path),
        "task": {"name": store.spec.name, "text": store.spec.text, "control_hz": store.spec.control_hz,
                 "max_episode_steps": store.spec.max_episode_steps, "reference_returns": store.spec.reference_returns},
        "created_at": attrs.get("created_at"),
        "source": attrs.get("source"),
        "episodes": store.n_episodes,
        "steps": store.n_steps,
        "lengths": describe(store.episode_lengths),
        "success_rate": float(np.mean(success)) if success is not None and len(success) else None,
        "episode_fields": sorted(meta),
        "rewards": rewards,
        "quality": measure(store, reward, reference, state_keys, grid_points).to_dict(),
        "stats": store.stats,
        "storage": _storage(store),
    }


def _plain(x: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _vec(values: Any, shown: int = 4) -> str:
    values = values if isinstance(values, list) else [values]
    text = ", ".join(_num(v, 3) for v in values[:shown])
    return f"[{text}{', ...' if len(values) > shown else ''}]" if len(values) > 1 else text


def render(s: dict[str, Any]) -> None:
    """Print the summary as rich tables."""
    out = console()
    overview = Table(title=f"{s['path']}", show_header=False, title_justify="left")
    lengths, storage, quality = s["lengths"], s["storage"], s["quality"]
    rows = [
        ("task", f"{s['task']['name']}: {s['task']['text']}"),
        ("episodes / steps", f"{s['episodes']} / {s['steps']}"),
        ("length mean / min / median / max",
         f"{_num(lengths['mean'])} / {_num(lengths['min'])} / {_num(lengths['median'])} / {_num(lengths['max'])}"),
        ("success rate", "-" if s["success_rate"] is None else f"{100 * s['success_rate']:.1f}%"),
        ("size on disk", human_bytes(storage["total_bytes"])),
        ("created / source", f"{s['created_at']} / {s['source']}"),
        ("episode fields", ", ".join(s["episode_fields"])),
    ]
    for k, v in rows:
        overview.add_row(k, v)
    out.print(overview)

    rewards = Table(title="reward sources (undiscounted episode returns)", title_justify="left")
    for col in ("source", "labelled steps", "episodes", "mean", "std", "min", "median", "max"):
        rewards.add_column(col)
    for name, r in s["rewards"].items():
        ret = r["returns"]
        coverage = "-" if r["coverage"] is None else f"{100 * r['coverage']:.1f}%"
        rewards.add_row(name, coverage, str(r["labelled_episodes"]), _num(ret["mean"]), _num(ret["std"]),
                        _num(ret["min"]), _num(ret["median"]), _num(ret["max"]))
    out.print(rewards)
    for name, r in s["rewards"].items():
        prov = "; ".join(f"{k}={v}" for k, v in r["provenance"].items()) or "none recorded"
        out.print(f"  provenance of '{name}': {prov}", highlight=False)

    q = Table(title="dataset quality (Schweighofer et al. 2022)", show_header=False, title_justify="left")
    q.add_row("TQ", f"{_num(quality['tq'])}  (reward '{quality['reward_source']}', mean return "
                    f"{_num(quality['mean_return'])}; normalised by {quality['tq_normaliser']})")
    q.add_row("SACo", f"{_num(quality['saco'])}  ({quality['unique_state_action_pairs']} unique state-action pairs / "
                      f"{quality['saco_denominator']} {quality['saco_normaliser']}; grid {quality['saco_grid_points']} "
                      "points per axis)")
    out.print(q)

    stats = Table(title="per-key statistics (per dimension; images per channel)", title_justify="left")
    for col in ("key", "count", "mean", "std", "min", "max", "stored", "ratio"):
        stats.add_column(col)
    arrays = storage["arrays"]
    for key, st in s["stats"].items():
        a = arrays.get(key, {})
        stats.add_row(key, str(st.get("count")), _vec(st["mean"]), _vec(st["std"]), _vec(st["min"]), _vec(st["max"]),
                      human_bytes(a.get("stored_bytes", 0)), _num(a.get("ratio"), 3))
    for key, a in arrays.items():
        if key not in s["stats"]:
            stats.add_row(key, "", "", "", "", "", human_bytes(a["stored_bytes"]), _num(a["ratio"], 3))
    out.print(stats)


def run(cfg: Any) -> int:
    """CLI entry: print the summary of ``path`` (tables, or JSON with json=true)."""
    c = load_config(InfoConfig, cfg, "dataset_info")
    require(c.path, "path", "dataset_info", "the store to summarise")
    store = EpisodeStore.open(c.path)
    reference = EpisodeStore.open(c.reference) if c.reference else None
    summary = summarize(store, reference, c.reward, c.state_keys, c.grid_points)
    if c.json:
        print(json.dumps(_plain(summary), indent=2))
    else:
        render(_plain(summary))
    return 0

