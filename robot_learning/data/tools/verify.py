"""Check an episode store without modifying it; exit 1 if anything is wrong.

    robot-learning dataset verify data/maze.zarr

Checks: the store opens (format, task spec); committed rows exist in every array and ``episode_ends``
is strictly increasing; no uncommitted rows past the last end (an interrupted or abandoned write);
every array has the shape and dtype the TaskSpec implies; no NaN/inf in observations, actions,
timestamps or extras, no inf in rewards; true terminals only on an episode's last step; timestamps
non-decreasing within an episode; statistics and counters up to date. Reward sources with unlabelled
(NaN) steps are reported as coverage, not as problems. Every problem names the array, the episode
where it applies, what was expected and what was found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.data.store import CORE_ARRAYS, EpisodeStore, StoreError
from robot_learning.data.tools.common import console, load_config, require
from robot_learning.spec import SpecError

#: Upper bound on the bytes read at once while scanning (image arrays get fewer rows per block).
BLOCK_BYTES = 64 << 20


@dataclass
class VerifyConfig:
    """configs/dataset_verify.yaml."""

    path: str | None = None
    images: bool = True
    block_steps: int = 65536


@dataclass
class Report:
    """Problems (the store is broken) and notes (worth knowing, not broken) found in one store."""

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    episodes: int = 0
    steps: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _episodes_of(rows: np.ndarray, ends: np.ndarray) -> list[int]:
    """Sorted episode indices that rows belong to (rows past the last end are left out)."""
    rows = rows[rows < (ends[-1] if len(ends) else 0)]
    return np.unique(np.searchsorted(ends, rows, side="right")).tolist()


def _short(items: list[int], limit: int = 10) -> str:
    return str(items[:limit])[:-1] + (f", ... ({len(items)} in all)]" if len(items) > limit else "]")


def expected_layout(store: EpisodeStore) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array path under data/ -> (per-step shape, dtype) implied by the TaskSpec (rewards included)."""
    spec = store.spec
    out = {f"obs/{o.key}": (tuple(o.shape), "uint8" if o.is_image else "float32") for o in spec.observations}
    out.update({"action": ((spec.action.dim,), "float32"), "terminal": ((), "bool"), "timestamp": ((), "float64")})
    out.update({f"reward/{s}": ((), "float32") for s in store.reward_sources})
    return out


def _check_layout(store: EpisodeStore, report: Report) -> None:
    arrays = store.data_arrays()
    for name, (shape, dtype) in expected_layout(store).items():
        if name not in arrays:
            report.problems.append(f"data/{name}: expected an array of per-step shape {shape}, found it missing")
            continue
        a = arrays[name]
        if tuple(a.shape[1:]) != shape or str(a.dtype) != dtype:
            report.problems.append(f"data/{name}: expected per-step shape {shape} and dtype {dtype} (TaskSpec "
                                   f"'{store.spec.name}'), found shape {tuple(a.shape[1:])} and dtype {a.dtype}")
    for name in arrays:
        if name.startswith("obs/") and name[4:] not in store.spec.obs:
            report.problems.append(f"data/{name}: expected only the TaskSpec's observation keys "
                                   f"{list(store.spec.obs_keys)}, found this extra key")
    if not store.reward_sources:
        report.notes.append("no reward sources: label rewards before offline RL (robot-learning reward ...)")
    if "success" not in store.meta_arrays():
        report.notes.append("meta/episode/success: missing, so the success rate is unknown")


def _check_values(store: EpisodeStore, name: str, rows: int, block: int, images: bool, report: Report) -> None:
    """Scan ``data/<name>`` (the first ``rows`` rows) for non-finite values and unreadable chunks."""
    a = store.root[f"data/{name}"]
    ends = store.episode_ends
    kind = a.dtype.kind
    if kind != "f" and not (images and a.ndim == 4):
        return
    nan_rows, inf_rows = [], []
    block = max(1, min(block, BLOCK_BYTES // max(1, a.dtype.itemsize * int(np.prod(a.shape[1:])))))
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        try:
            values = np.asarray(a[start:stop])
        except Exception as e:  # noqa: BLE001 - any codec/IO failure means unreadable data
            report.problems.append(f"data/{name}: expected readable rows {start}-{stop - 1} (episodes "
                                   f"{_short(_episodes_of(np.arange(start, stop), ends))}), found "
                                   f"{type(e).__name__}: {e}")
            continue
        if kind != "f":
            continue
        flat = values.reshape(len(values), -1)
        nan_rows.append(start + np.flatnonzero(np.isnan(flat).any(axis=1)))
        inf_rows.append(start + np.flatnonzero(np.isinf(flat).any(axis=1)))
    if kind != "f":
        return
    nan, inf = np.concatenate(nan_rows or [np.zeros(0, int)]), np.concatenate(inf_rows or [np.zeros(0, int)])
    if name.startswith("reward/"):
        if len(nan):
            report.notes.append(f"data/{name}: {100 * (1 - len(nan) / max(rows, 1)):.1f}% of steps labelled; "
                                f"{len(nan)} unlabelled (NaN) step(s) in episodes {_short(_episodes_of(nan, ends))}")
        else:
            report.notes.append(f"data/{name}: every step labelled")
        bad, what = inf, "inf"
    elif name in CORE_ARRAYS or name.startswith("obs/"):
        bad, what = np.union1d(nan, inf), "NaN/inf"
    else:
        if len(nan):
            report.notes.append(f"data/{name}: {len(nan)} step(s) without a value (NaN fill) in episodes "
                                f"{_short(_episodes_of(nan, ends))}")
        bad, what = inf, "inf"
    if len(bad):
        report.problems.append(f"data/{name}: expected finite values, found {what} in {len(bad)} step(s) (first at "
                               f"row {int(bad[0])}) in episodes {_short(_episodes_of(bad, ends))}")


def _check_episodes(store: EpisodeStore, report: Report) -> None:
    ends, starts = store.episode_ends, store.episode_starts
    terminal = store.read("terminal")
    mid = np.flatnonzero(terminal)
    mid = mid[~np.isin(mid + 1, ends)]
    if len(mid):
        report.problems.append(f"data/terminal: expected true terminals only on an episode's last step, found "
                               f"{len(mid)} mid-episode in episodes {_short(_episodes_of(mid, ends))}")
    stamp = store.read("timestamp")
    back = np.flatnonzero(np.diff(stamp) < 0) + 1
    back = back[~np.isin(back, starts)]
    if len(back):
        report.problems.append(f"data/timestamp: expected non-decreasing times within an episode, found "
                               f"{len(back)} step(s) going back in episodes {_short(_episodes_of(back, ends))}")
    long = np.flatnonzero(store.episode_lengths > store.spec.max_episode_steps).tolist()
    if long:
        report.notes.append(f"episodes {_short(long)} are longer than the task's max_episode_steps "
                            f"({store.spec.max_episode_steps})")


def _check_bookkeeping(store: EpisodeStore, report: Report) -> None:
    covered = store.root["meta/stats"].attrs.get("n_steps", 0) if "meta/stats" in store.root else None
    if covered != store.n_steps:
        report.problems.append(f"meta/stats: expected statistics over the {store.n_steps} committed steps, found them "
                               f"over {covered} (stale; opening the store for append recomputes them)")
    info = store.info
    for key, value in (("total_episodes", store.n_episodes), ("total_steps", store.n_steps)):
        if info.get(key) != value:
            report.problems.append(f"attrs.info.{key}: expected {value} (from meta/episode_ends), "
                                   f"found {info.get(key)!r}")


def verify(path: str | os.PathLike, images: bool = True, block_steps: int = 65536) -> Report:
    """Every problem of the store at ``path``; the store is opened read-only and never modified."""
    report = Report(Path(path))
    try:
        store = EpisodeStore.open(path, mode="r", check=False)
    except (StoreError, SpecError) as e:
        report.problems.append(str(e))
        return report
    report.episodes, report.steps = store.n_episodes, store.n_steps
    truncated = store.committed_problems()
    report.problems += truncated
    for name, rows in sorted(store.pending_leftover().items()):
        data = name.startswith("data/")
        committed = store.n_steps if data else store.n_episodes
        why = "the last committed episode end" if data else "one per committed episode"
        report.problems.append(f"{name}: expected {committed} rows ({why}), found {rows}: "
                               f"{rows - committed} uncommitted row(s) from an interrupted or abandoned write, or a "
                               "writer still running (opening the store for append removes them)")
    _check_layout(store, report)
    for name, a in store.data_arrays().items():
        _check_values(store, name, min(store.n_steps, a.shape[0]), block_steps, images, report)
    if not truncated:
        _check_episodes(store, report)
    _check_bookkeeping(store, report)
    return report


def run(cfg: Any) -> int:
    """CLI entry: print every problem of ``path``; 1 if there are any, else 0."""
    c = load_config(VerifyConfig, cfg, "dataset_verify")
    require(c.path, "path", "dataset_verify", "the store to check")
    report = verify(c.path, c.images, c.block_steps)
    out = console()
    for note in report.notes:
        out.print(f"[cyan]note[/cyan]    {note}", highlight=False)
    for problem in report.problems:
        out.print(f"[red]problem[/red] {problem}", highlight=False)
    if report.ok:
        out.print(f"[green]ok[/green] {report.path}: {report.episodes} episodes, {report.steps} steps, no problems")
        return 0
    out.print(f"[red]FAILED[/red] {report.path}: {len(report.problems)} problem(s)")
    return 1
