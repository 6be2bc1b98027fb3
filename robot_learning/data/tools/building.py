"""Writing new stores from existing data: staged creation and episode copying.

Every verb that produces a store (convert, merge, drop-episodes) builds it at ``<out>.partial`` and
renames it to ``<out>`` only once it is complete, so a failed or killed run never leaves a half-written
store under the requested name, and an existing store is replaced only by a finished one.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robot_learning.data.store import Episode, EpisodeStore, StorageOptions, StoreError
from robot_learning.data.writer import EpisodeWriter
from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)

#: Bytes buffered per flush when writing in bulk: each flush costs ~20-60 ms of fixed zarr work per store
#: (benchmarks/store.py), so bulk writers flush rarely, bounded in memory for camera data.
BULK_FLUSH_BYTES = 64 << 20
#: Most steps per bulk flush: the low-dim chunk length, so low-dim chunks are written whole.
BULK_FLUSH_STEPS = StorageOptions().lowdim_chunk_steps


def bulk_writer(store: EpisodeStore) -> EpisodeWriter:
    """A writer for converters and copies of ``store``'s task.

    It flushes every BULK_FLUSH_STEPS steps or BULK_FLUSH_BYTES of buffered data, whichever is fewer, and
    does not validate each step: converters check whole episodes first, copies carry data that was
    validated when first written (and must keep unlabelled, NaN, rewards).
    """
    spec = store.spec
    step_bytes = sum(int(np.prod(o.shape)) * (1 if o.is_image else 4) for o in spec.observations)
    step_bytes += 4 * spec.action.dim + 32  # action, rewards, terminal, timestamp
    return store.writer(flush_steps=int(np.clip(BULK_FLUSH_BYTES // step_bytes, 64, BULK_FLUSH_STEPS)), validate=False)


def check_output(out: str | os.PathLike, inputs: Sequence[str | os.PathLike], overwrite: bool) -> Path:
    """``out`` as a Path, after checking it is free (or ``overwrite``) and is none of ``inputs``."""
    out = Path(out)
    for src in inputs:
        if Path(src).resolve() == out.resolve():
            raise StoreError(f"{out}: output store: expected a new path (stores are never edited in place), "
                             f"found the input {src}")
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: output store: expected no file or directory, found one "
                         "(pass overwrite=true to replace it)")
    return out


@contextmanager
def staged_store(out: str | os.PathLike, spec: TaskSpec, *, source: str, overwrite: bool = False,
                 options: StorageOptions | None = None) -> Iterator[EpisodeStore]:
    """Yield a new store at ``<out>.partial``; on success move it to ``out``, on failure delete it."""
    out = check_output(out, (), overwrite)
    staging = out.with_name(out.name + ".partial")
    store = EpisodeStore.create(staging, spec, source=source, overwrite=True, options=options)
    try:
        yield store
    except BaseException:
        store.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    store.close()
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(staging, out)
    log.info("%s: written (%d episodes, %d steps)", out, store.n_episodes, store.n_steps)


def copy_episodes(src: EpisodeStore, indices: Sequence[int], writer: EpisodeWriter, reward_sources: Sequence[str],
                  meta_defaults: Mapping[str, Any] | None = None,
                  transform: Callable[[Episode], Episode] | None = None) -> None:
    """Append episodes ``indices`` of ``src`` through ``writer``, value for value.

    Observations, actions, the ``reward_sources`` (NaN, i.e. unlabelled, stays NaN), terminals, timestamps,
    extras and episode meta are copied unchanged; ``meta_defaults`` fill meta fields an episode lacks or
    has empty. ``writer`` comes from :func:`bulk_writer`. ``transform`` maps each episode read before it is
    written (``dataset corrupt`` replaces some of its values).
    """
    for index in tqdm(indices, desc=f"copy {src.path.name}", unit="episode", leave=False):
        ep = src.episode(int(index))
        if transform is not None:
            ep = transform(ep)
        meta = dict(ep.meta)
        success = bool(meta.pop("success", False))
        for key, value in (meta_defaults or {}).items():
            if meta.get(key) in (None, ""):
                meta[key] = value
        writer.begin(**meta)
        for t in range(len(ep)):
            writer.add_step({k: v[t] for k, v in ep.obs.items()}, ep.action[t],
                            reward={s: ep.reward[s][t] for s in reward_sources} or None,
                            terminal=bool(ep.terminal[t]), timestamp=float(ep.timestamp[t]),
                            extras={k: v[t] for k, v in ep.extras.items()})
        writer.end(success=success)
