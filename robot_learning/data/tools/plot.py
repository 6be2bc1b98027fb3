"""Plot an episode store to PNG files.

    robot-learning dataset plot data/maze.zarr out=plots/maze

Writes ``returns.png`` (episode-return histogram per reward source), ``lengths.png`` (episode-length
histogram), ``trajectories.png`` (the first two dims of ``position_key`` per episode, coloured by
success; for maze-like tasks) and ``frames_<camera>.png`` (a grid of frames sampled across episodes
and time) for every camera, and prints the files written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from robot_learning.data.quality import episode_returns
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.common import console, load_config, require

log = logging.getLogger(__name__)


@dataclass
class PlotConfig:
    """configs/dataset_plot.yaml."""

    path: str | None = None
    out: str | None = None
    position_key: str | None = "position"
    max_trajectories: int = 200
    frame_episodes: int = 4
    frames_per_episode: int = 6
    bins: int = 30


def _spread(n: int, k: int) -> np.ndarray:
    """Up to ``k`` distinct indices evenly spread over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)) if n else np.zeros(0, int)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_returns(store: EpisodeStore, path: Path, bins: int) -> Path:
    """Histogram of the undiscounted episode returns of every reward source (fully labelled episodes)."""
    sources = store.reward_sources or [None]
    fig = Figure(figsize=(5 * len(sources), 3.5))
    for i, source in enumerate(sources):
        ax = fig.add_subplot(1, len(sources), i + 1)
        returns = episode_returns(store.reward(source), store.episode_ends) if source else np.zeros(0)
        returns = returns[np.isfinite(returns)]
        if len(returns):
            ax.hist(returns, bins=bins, color="tab:blue")
        ax.set_title(f"return: {source or 'no reward source'} ({len(returns)} episodes)")
        ax.set_xlabel("episode return")
        ax.set_ylabel("episodes")
    return _save(fig, path)


def plot_lengths(store: EpisodeStore, path: Path, bins: int) -> Path:
    """Histogram of episode lengths in steps."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.hist(store.episode_lengths, bins=bins, color="tab:gray")
    ax.set_title(f"episode length ({store.n_episodes} episodes)")
    ax.set_xlabel("steps")
    ax.set_ylabel("episodes")
    return _save(fig, path)


def plot_trajectories(store: EpisodeStore, path: Path, key: str, max_episodes: int) -> Path:
    """The first two dims of ``key`` per episode (start marked), green on success, red on failure."""
    pos = store.read(f"obs/{key}")
    success = store.episode_meta().get("success")
    starts, ends = store.episode_starts, store.episode_ends
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    drawn = {True: 0, False: 0, None: 0}
    for e in _spread(store.n_episodes, max_episodes):
        ok = None if success is None else bool(success[e])
        color = {True: "tab:green", False: "tab:red", None: "tab:blue"}[ok]
        xy = pos[starts[e]:ends[e], :2]
        ax.plot(xy[:, 0], xy[:, 1], color=color, alpha=0.5, linewidth=0.8)
        ax.plot(xy[0, 0], xy[0, 1], "o", color=color, markersize=2)
        drawn[ok] += 1
    labels = {True: "success", False: "failure", None: "episode"}
    for ok, color in ((True, "tab:green"), (False, "tab:red"), (None, "tab:blue")):
        if drawn[ok]:
            ax.plot([], [], color=color, label=f"{labels[ok]} ({drawn[ok]})")
    ax.legend(loc="best", fontsize="small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{key}[0:2] trajectories (dots: starts)")
    ax.set_xlabel(f"{key}[0]")
    ax.set_ylabel(f"{key}[1]")
    return _save(fig, path)


def plot_frames(store: EpisodeStore, path: Path, key: str, episodes: int, per_episode: int) -> Path:
    """A grid of frames of camera ``key``: rows are episodes, columns evenly spaced times."""
    rows = _spread(store.n_episodes, episodes)
    starts, lengths = store.episode_starts, store.episode_lengths
    fig = Figure(figsize=(1.8 * per_episode, 1.9 * len(rows)))
    for r, e in enumerate(rows):
        for c, t in enumerate(_spread(int(lengths[e]), per_episode)):
            ax = fig.add_subplot(len(rows), per_episode, r * per_episode + c + 1)
            row = int(starts[e] + t)
            ax.imshow(store.read(f"obs/{key}", row, row + 1)[0])
            ax.set_title(f"ep {e} t={t}", fontsize=7)
            ax.axis("off")
    return _save(fig, path)


def plot_store(store: EpisodeStore, out: str | os.PathLike, position_key: str | None = "position",
               max_trajectories: int = 200, frame_episodes: int = 4, frames_per_episode: int = 6,
               bins: int = 30) -> list[Path]:
    """Write every plot of ``store`` into directory ``out``; returns the files written."""
    if store.n_episodes == 0:
        raise StoreError(f"{store.path}: expected at least one committed episode to plot, found none")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_returns(store, out / "returns.png", bins), plot_lengths(store, out / "lengths.png", bins)]
    spec = store.spec
    if position_key and position_key in spec.low_dim_keys and spec.obs[position_key].shape[0] >= 2:
        written.append(plot_trajectories(store, out / "trajectories.png", position_key, max_trajectories))
    elif position_key:
        log.info("no trajectory plot: position_key '%s' is not a low-dim key with 2+ dims of task '%s' (keys: %s)",
                 position_key, spec.name, list(spec.low_dim_keys))
    for key in spec.image_keys:
        written.append(plot_frames(store, out / f"frames_{key}.png", key, frame_episodes, frames_per_episode))
    return written


def run(cfg: Any) -> int:
    """CLI entry: plot ``path`` into ``out`` and print the files written."""
    c = load_config(PlotConfig, cfg, "dataset_plot")
    require(c.path, "path", "dataset_plot", "the store to plot")
    require(c.out, "out", "dataset_plot", "a directory for the PNG files")
    files = plot_store(EpisodeStore.open(c.path), c.out, c.position_key, c.max_trajectories, c.frame_episodes,
                       c.frames_per_episode, c.bins)
    for f in files:
        console().print(str(f), highlight=False)
    return 0
