"""D4RL-style HDF5 files -> episode store.

The file holds flat per-step datasets: ``observations`` (N, D), ``actions`` (N, A), ``rewards`` (N,),
``terminals`` (N,), ``timeouts`` (N,) and optionally ``next_observations`` (N, D). Row ``t`` is the
transition (s_t, a_t, r_t, s_t+1): the same convention as the store's rows.

Episodes end after a row with ``terminals`` (a true terminal, stored in ``data/terminal``) or ``timeouts``
(a time limit: the episode ends without a terminal), and - when ``next_observations`` is present - after
a row whose next observation is not the following row's observation
(``||observations[t+1] - next_observations[t]|| > next_obs_tolerance``): some D4RL trajectories end
without either flag (CORL PR #63). Rows after the last boundary form a final episode ended by the end
of the data. Each episode records ``source``, ``source_episode`` (its index in the file),
``source_row`` (its first row) and ``end_reason`` (terminal | timeout | next_obs_mismatch | end_of_data).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from robot_learning.data.convert.episodes import ConvertOptions, SourceEpisode, write_episodes
from robot_learning.data.convert.obs_map import ObsMap
from robot_learning.spec import SpecError, TaskSpec

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL = ("next_observations",)
#: Per-step datasets that are one value per row; (N, 1) is accepted and flattened.
SCALARS = ("rewards", "terminals", "timeouts")


def load(path: Path) -> dict[str, np.ndarray]:
    """Read and shape-check the D4RL datasets of ``path`` (other keys such as ``infos/*`` are ignored)."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SpecError(f"{path}: expected a readable HDF5 file, found an unreadable one ({e})") from None
    with f:
        for key in REQUIRED:
            if not isinstance(f.get(key), h5py.Dataset):
                found = "a group" if key in f else "it missing"
                raise SpecError(f"{path}: key '{key}': expected a dataset (D4RL keys: {', '.join(REQUIRED)}; optional "
                                f"next_observations), found {found} (top-level keys: {sorted(f.keys())})")
        data = {k: np.asarray(f[k][()]) for k in REQUIRED + OPTIONAL if isinstance(f.get(k), h5py.Dataset)}
    n = len(data["observations"])
    for key, values in data.items():
        if values.ndim == 0 or len(values) != n:
            raise SpecError(f"{path}: key '{key}': expected {n} rows (as many as 'observations'), "
                            f"found {values.shape[0] if values.ndim else 'a scalar'}")
    for key in SCALARS:
        if data[key].ndim == 2 and data[key].shape[1] == 1:
            data[key] = data[key][:, 0]
        if data[key].ndim != 1:
            raise SpecError(f"{path}: key '{key}': expected shape ({n},), found {data[key].shape}")
    if data["observations"].ndim < 2:
        raise SpecError(f"{path}: key 'observations': expected shape ({n}, D), found {data['observations'].shape}")
    if "next_observations" in data and data["next_observations"].shape != data["observations"].shape:
        raise SpecError(f"{path}: key 'next_observations': expected shape {data['observations'].shape} (as "
                        f"'observations'), found {data['next_observations'].shape}")
    if n == 0:
        raise SpecError(f"{path}: key 'observations': expected at least one row, found none")
    return data


def boundaries(data: dict[str, np.ndarray], tolerance: float) -> tuple[np.ndarray, list[str]]:
    """Exclusive end row of every episode and why it ended."""
    terminals, timeouts = data["terminals"].astype(bool), data["timeouts"].astype(bool)
    done = terminals | timeouts
    mismatch = np.zeros(len(done), dtype=bool)
    if "next_observations" in data and len(done) > 1:
        obs, nxt = data["observations"], data["next_observations"]
        gap = np.linalg.norm((obs[1:].astype(np.float64) - nxt[:-1]).reshape(len(done) - 1, -1), axis=1)
        mismatch[:-1] = (gap > tolerance) & ~done[:-1]
    cut = done | mismatch
    cut[-1] = True
    ends = np.flatnonzero(cut) + 1
    reasons = ["terminal" if terminals[e - 1] else "timeout" if timeouts[e - 1]
               else "next_obs_mismatch" if mismatch[e - 1] else "end_of_data" for e in ends]
    return ends, reasons


def convert(input: Path, spec: TaskSpec, out: Path, options: ConvertOptions) -> Path:
    """Write the episodes of the D4RL file ``input`` into a new store ``out`` for ``spec``."""
    data = load(input)
    if data["actions"].shape[1:] != (spec.action.dim,):
        raise SpecError(f"{input}: key 'actions': expected shape (N, {spec.action.dim}) (task '{spec.name}'), "
                        f"found {data['actions'].shape}")
    obs_map = ObsMap.build(spec, options.obs_map, {"": data["observations"].shape[1:]}, f"{input}")
    ends, reasons = boundaries(data, options.next_obs_tolerance)
    starts = np.concatenate([[0], ends[:-1]])

    def episodes():
        for i, (start, end, reason) in enumerate(zip(starts, ends, reasons, strict=True)):
            rows = slice(int(start), int(end))
            yield SourceEpisode(
                where=f"{input} rows {start}-{end - 1} (episode {i})",
                obs=obs_map.apply({"": data["observations"][rows]}),
                action=data["actions"][rows],
                reward=data["rewards"][rows],
                terminal=data["terminals"][rows].astype(bool),
                meta={"source": str(input), "source_episode": i, "source_row": int(start), "end_reason": reason},
            )

    provenance = {"format": "d4rl", "episodes_by_end_reason": {r: reasons.count(r) for r in sorted(set(reasons))}}
    return write_episodes(episodes(), spec, out, source=str(input), provenance=provenance, options=options,
                          total=len(ends))
