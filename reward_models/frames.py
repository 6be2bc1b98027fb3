"""Reading what labelers and reward models look at from an episode store: camera frames and low-dim state.

Everything is addressed by global step index (row of ``data/``), the numbering ``meta/episode_ends``
uses. Reads go through zarr's orthogonal selection on sorted unique rows, so a batch of scattered
frames costs one pass over the chunks it touches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import SpecError


def camera_key(store: EpisodeStore, camera: str | None, needed_by: str) -> str:
    """The camera observation ``needed_by`` reads: ``camera`` if given, else the task's first camera.

    A store without camera observations (or without the requested one) is a SpecError naming the store,
    the field and the cameras it has.
    """
    cameras = list(store.spec.image_keys)
    if not cameras:
        raise SpecError(f"{store.path}: task '{store.spec.name}' observations: expected a camera (kind: rgb) for "
                        f"{needed_by}, found only low-dim keys {list(store.spec.obs_keys)}")
    if camera is None:
        return cameras[0]
    if camera not in cameras:
        raise SpecError(f"{store.path}: camera '{camera}' for {needed_by}: expected one of {cameras}, "
                        "found no such camera")
    return camera


def lowdim_keys(store: EpisodeStore, keys: Sequence[str], needed_by: str) -> list[str]:
    """``keys`` after checking each is a low-dimensional observation of the store's task."""
    known = list(store.spec.low_dim_keys)
    for key in keys:
        if key not in known:
            raise SpecError(f"{store.path}: low-dim key '{key}' for {needed_by}: expected one of {known}, found no such key")
    return list(keys)


def read_rows(store: EpisodeStore, name: str, rows: np.ndarray) -> np.ndarray:
    """``data/<name>`` at global step indices ``rows`` (any order, repeats allowed)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        array = store.root[f"data/{name}"]
        return np.zeros((0, *array.shape[1:]), dtype=array.dtype)
    if rows.min() < 0 or rows.max() >= store.n_steps:
        raise IndexError(f"{store.path}: rows of '{name}': expected indices in [0, {store.n_steps}), "
                         f"found [{rows.min()}, {rows.max()}]")
    unique, inverse = np.unique(rows, return_inverse=True)
    lo, hi = int(unique[0]), int(unique[-1]) + 1
    array = store.root[f"data/{name}"]
    if hi - lo <= 2 * len(unique):
        block = np.asarray(array[lo:hi])[unique - lo]
    else:
        block = np.asarray(array.get_orthogonal_selection((unique,)))
    return block[inverse]


def read_obs(store: EpisodeStore, keys: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Observation ``keys`` at ``rows`` as a dict of (N, ...) arrays."""
    return {k: read_rows(store, f"obs/{k}", rows) for k in keys}


def iter_blocks(n: int, block: int) -> Iterator[slice]:
    """Consecutive slices of at most ``block`` rows covering ``range(n)``."""
    for start in range(0, n, block):
        yield slice(start, min(n, start + block))


def next_rows(store: EpisodeStore) -> np.ndarray:
    """For every step t, the row of its next observation: t + 1 inside an episode, t at an episode's last step.

    The store keeps no observation after an episode's last step, so that step's "next" frame is its own.
    """
    rows = np.arange(store.n_steps, dtype=np.int64) + 1
    ends = store.episode_ends
    rows[ends - 1] = ends - 1
    return rows


def store_fingerprint(store: EpisodeStore) -> dict[str, object]:
    """What identifies a store's committed content for derived artefacts (preferences, caches, models).

    Stores only grow, so an artefact made from the first ``n_episodes`` stays valid while these episode
    boundaries are a prefix of the store's.
    """
    ends = store.episode_ends
    return {"path": str(store.path.resolve()), "task": store.spec.name, "n_episodes": int(len(ends)),
            "n_steps": store.n_steps, "created_at": store.attrs.get("created_at", ""),
            "episode_ends_sha": hashlib.sha256(ends.astype("<i8").tobytes()).hexdigest()[:16]}


def matches_prefix(store: EpisodeStore, fingerprint: dict[str, object]) -> bool:
    """True when the store's first ``fingerprint['n_episodes']`` episode boundaries are the fingerprinted ones."""
    n = int(fingerprint["n_episodes"])
    ends = store.episode_ends
    if n > len(ends):
        return False
    return hashlib.sha256(ends[:n].astype("<i8").tobytes()).hexdigest()[:16] == fingerprint["episode_ends_sha"]
