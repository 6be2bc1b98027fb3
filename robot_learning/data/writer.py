"""Streaming episode writer: append steps, then end an episode (success or failure) or discard it.

Steps are buffered in memory and flushed to the store every ``flush_steps`` steps, so memory stays
bounded however long an episode runs. ``end()`` flushes the rest and commits (store.py explains the
protocol); ``discard()`` truncates whatever of the episode was already flushed. The recorder node,
``sim.generate_dataset`` and the dataset converters all write through this class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_learning.data import stats as st
from robot_learning.spec import SpecError

if TYPE_CHECKING:
    from robot_learning.data.store import EpisodeStore

log = logging.getLogger(__name__)


class EpisodeWriter:
    """Writes episodes into an :class:`EpisodeStore` opened for append.

    ``validate`` checks every step against the TaskSpec (shapes, dtypes, finite values); a bad step
    raises :class:`SpecError` and is not written.
    """

    def __init__(self, store: EpisodeStore, flush_steps: int = 64, validate: bool = True):
        if flush_steps <= 0:
            raise ValueError(f"flush_steps: expected a positive integer, found {flush_steps}")
        self.store = store
        self.spec = store.spec
        self.flush_steps = flush_steps
        self.validate = validate
        self._active = False
        self._committing = False   # inside the store's commit (see discard)
        self._meta: dict[str, Any] = {}
        self._buffer: dict[str, list[np.ndarray]] = {}
        self._flushed = 0
        self._steps = 0
        self._start_time = 0.0
        self._pending_stats: dict[str, tuple[st.Moments, list[np.ndarray]]] = {}
        store._writer_active = True

    # ------------------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """True between ``begin()`` and ``end()``/``discard()``."""
        return self._active

    @property
    def steps(self) -> int:
        """Steps written so far in the current episode."""
        return self._steps

    # ------------------------------------------------------------------------------ episode
    def begin(self, **meta: Any) -> None:
        """Start an episode; ``meta`` becomes its ``meta/episode`` fields (task text, operator, seed...)."""
        if self._active:
            raise RuntimeError(f"{self.store.path}: begin(): expected no active episode, found one with {self._steps} steps")
        self._active = True
        self._meta = {"task": self.spec.text, "start_time": time.time(), **meta}
        self._buffer = {}
        self._flushed = 0
        self._steps = 0
        self._pending_stats = {}

    def add_step(self, obs: Mapping[str, Any], action: Any, reward: float | Mapping[str, float] | None = None,
                 terminal: bool = False, timestamp: float | None = None,
                 extras: Mapping[str, Any] | None = None) -> None:
        """Append one step: the observation, the action taken in it, its reward(s) and terminal flag.

        ``reward`` is a float (source ``env``) or a mapping source -> value; ``extras`` are extra
        per-step arrays (header stamps, receive times) stored under ``data/<name>``.
        """
        if not self._active:
            raise RuntimeError(f"{self.store.path}: add_step(): expected an active episode (call begin() first), found none")
        where = f"{self.store.path} step {self._steps} of episode {self.store.n_episodes}"
        if self.validate:
            self.spec.validate_observation(obs, where=where)
            action = self.spec.validate_action(action, where=where)
        row: dict[str, np.ndarray] = {f"obs/{k}": np.asarray(obs[k], dtype=self.spec.obs[k].dtype if self.spec.obs[k].is_image
                                                               else np.float32) for k in self.spec.obs_keys}
        row["action"] = np.asarray(action, dtype=np.float32)
        row["terminal"] = np.asarray(bool(terminal))
        row["timestamp"] = np.asarray(self._steps * self.spec.dt if timestamp is None else timestamp, dtype=np.float64)
        rewards = {} if reward is None else ({"env": reward} if not isinstance(reward, Mapping) else dict(reward))
        for source, value in rewards.items():
            value = np.float32(value)
            if self.validate and not np.isfinite(value):
                raise SpecError(f"{where}: field 'reward/{source}': expected a finite number, found {float(value)}")
            row[f"reward/{source}"] = np.asarray(value)
        for name, value in (extras or {}).items():
            if name.startswith(("obs/", "reward/")) or name in ("action", "terminal", "timestamp"):
                raise SpecError(f"{where}: extra '{name}': expected a name outside obs/, reward/ and the core arrays")
            row[name] = np.asarray(value)
        if self._buffer and set(row) != set(self._buffer):
            missing = sorted(set(self._buffer) - set(row))
            added = sorted(set(row) - set(self._buffer))
            raise SpecError(f"{where}: expected the same fields as the episode's first step, found "
                            f"{'missing ' + str(missing) if missing else ''}{' new ' + str(added) if added else ''}")
        for name, value in row.items():
            self._buffer.setdefault(name, []).append(value)
        self._steps += 1
        if self._steps - self._flushed >= self.flush_steps:
            self._flush()

    def end(self, success: bool, **meta: Any) -> int:
        """Flush and commit the episode; returns its index. An empty episode is discarded instead."""
        if not self._active:
            raise RuntimeError(f"{self.store.path}: end(): expected an active episode, found none")
        if self._steps == 0:
            log.warning("%s: ending an episode with no steps: discarded", self.store.path)
            self._active = False
            return -1
        self._flush()
        self._fill_missing_sources()
        self._committing = True
        index = self.store._commit_episode(self._steps, {**self._meta, **meta, "success": bool(success)},
                                           self._pending_stats)
        self._committing = self._active = False
        return index

    def discard(self) -> None:
        """Drop the active episode, including steps flushed to disk.

        After a commit cut short (Ctrl-C inside :meth:`end`) the store recovers instead: the episode goes if the
        commit had not reached ``meta/episode_ends``, else it stays (committed) with its statistics completed.
        """
        if not self._active:
            return
        if self._committing:
            self.store._recover_interrupted_commit()
        else:
            self.store._truncate_uncommitted()
        self._committing = self._active = False
        self._buffer = {}
        self._pending_stats = {}

    def close(self, success: bool | None = None) -> None:
        """End the active episode (``success`` given) or discard it (``success=None``); release the writer."""
        if self._active:
            if success is None:
                self.discard()
            else:
                self.end(success)
        self.store._writer_active = False

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals
    def _flush(self) -> None:
        """Write buffered steps to the store (data arrays only: nothing is committed here)."""
        if not self._buffer or not self._buffer["action"]:
            return
        start = self.store.n_steps + self._flushed
        count = len(self._buffer["action"])
        for name, values in self._buffer.items():
            block = np.stack(values)
            a = self.store.ensure_array(name, block[0])
            if a.shape[0] != start:
                # an array this episode did not write before (e.g. a reward source added by add_reward)
                self._pad_to(name, a, start)
            a.resize((start + count, *a.shape[1:]))
            a[start:start + count] = block
            if name.startswith(("obs/", "reward/")) or name == "action":
                rows = st.stat_rows(name, block)
                m, kept = self._pending_stats.get(name, (st.Moments.empty(rows.shape[1]), []))
                self._pending_stats[name] = (m.merged(st.Moments.of(rows)), kept + [rows])
        self._flushed += count
        self._buffer = {name: [] for name in self._buffer}

    def _pad_to(self, name: str, a: Any, start: int) -> None:
        if a.shape[0] > start:
            raise RuntimeError(f"{self.store.path}: 'data/{name}' has {a.shape[0]} rows, expected at most {start}")
        fill = np.full((start - a.shape[0], *a.shape[1:]), a.fill_value, dtype=a.dtype)
        old = a.shape[0]
        a.resize((start, *a.shape[1:]))
        a[old:start] = fill

    def _fill_missing_sources(self) -> None:
        """Give every data array this episode did not write (e.g. older reward sources) fill values."""
        end = self.store.n_steps + self._steps
        for name, a in self.store.data_arrays().items():
            if a.shape[0] < end:
                self._pad_to(name, a, end)
