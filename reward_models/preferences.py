"""Preference datasets: the labelled segment pairs of one store, kept beside it in ``<store>.prefs/``.

Why beside the store and not inside it:

- Labelling only reads the store. The store's single writer lock stays free for a recorder appending
  episodes while a VLM labels frames, and reward work can never touch committed episode data.
- Preferences are derived and disposable, and they live with caches of another size and lifecycle
  (VLM responses, frame embeddings). ``dataset merge``/``drop-episodes`` renumber steps, so a copied
  store must not carry labels whose indices would silently point at other frames.

Every labelling run records the store's fingerprint (its episode boundaries). Opening a preference
dataset with a store whose boundaries differ is a StoreError. Stores only grow, so labels stay valid
while the recorded boundaries are a prefix of the store's.

Layout::

    <store>.prefs/
      runs.jsonl     one line per labelling run: run id, labeler provenance, sampling, store fingerprint
      labels.jsonl   one line per answered query: run, query index, first, second, length, choice, confidence
      vlm_cache/     chat_vlm responses;  features/  per-frame CLIP embeddings

Appends write whole lines in one write and fsync, under a file lock. A torn last line (a kill during
the write) is ignored when read and trimmed before the next append, so a killed run loses at most the
chunk in flight, and that chunk is re-asked from the labeler's cache.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.data.store import EpisodeStore, StoreError
from reward_models.frames import matches_prefix
from reward_models.labelers.base import CANT_TELL, Labels, Pairs

log = logging.getLogger(__name__)


def default_root(store_path: str | os.PathLike) -> Path:
    """``data/x.zarr`` -> ``data/x.zarr.prefs``."""
    return Path(str(Path(store_path)).rstrip("/") + ".prefs")


@dataclass
class PreferenceData:
    """Labelled pairs as arrays (N,): segment starts and lengths, choice (0/1/-1), confidence, run id, query index."""

    first: np.ndarray
    second: np.ndarray
    length: np.ndarray
    choice: np.ndarray
    confidence: np.ndarray
    run: np.ndarray
    query: np.ndarray

    def __len__(self) -> int:
        return int(len(self.choice))

    def select(self, mask: np.ndarray) -> PreferenceData:
        return PreferenceData(**{k: v[mask] for k, v in self.__dict__.items()})

    def decided(self) -> PreferenceData:
        """The pairs with a preference (RL-VLM-F drops can't-tell answers before training)."""
        return self.select(self.choice != CANT_TELL)

    def keys(self) -> list[str]:
        """``run:query`` of every pair: a stable name for train/held-out bookkeeping."""
        return [f"{r}:{q}" for r, q in zip(self.run, self.query)]


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete, _, torn = raw.rpartition(b"\n")
    if torn:
        log.warning("%s: ignoring a torn last line (%d bytes) left by an interrupted write", path, len(torn))
    return [json.loads(line) for line in complete.split(b"\n") if line.strip()] if complete else []


class PreferenceDataset:
    """The preference dataset of ``store`` at ``root`` (default ``<store>.prefs``), checked against the store."""

    def __init__(self, store: EpisodeStore, root: str | os.PathLike | None = None):
        self.store = store
        self.root = Path(root) if root is not None else default_root(store.path)
        self.runs_path = self.root / "runs.jsonl"
        self.labels_path = self.root / "labels.jsonl"
        for run in self.runs:
            if not matches_prefix(store, run["store"]):
                raise StoreError(f"{self.root}: run {run['run_id']}: expected labels of {store.path} (the first "
                                 f"{run['store']['n_episodes']} episode boundaries as recorded), found them different: "
                                 "these preferences belong to another store (pass prefs=<dir> for this one)")

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Every labelling run (provenance), in order."""
        return _read_lines(self.runs_path)

    def run(self, run_id: str) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["run_id"] == run_id), None)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _append(path: Path, records: Sequence[dict[str, Any]]) -> None:
        if path.exists() and path.stat().st_size:
            with open(path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.seek(0)
                    keep = f.read().rpartition(b"\n")[0]
                    f.truncate(len(keep) + 1 if keep else 0)
        blob = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        with open(path, "ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())

    def start_run(self, info: dict[str, Any]) -> None:
        """Record a labelling run (``info`` holds ``run_id`` and its provenance) unless it is already recorded."""
        with self._locked():
            if self.run(info["run_id"]) is None:
                self._append(self.runs_path, [{**info, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])

    def answered(self, run_id: str) -> np.ndarray:
        """Query indices of ``run_id`` that already have an answer."""
        return np.array([r["query"] for r in _read_lines(self.labels_path) if r["run"] == run_id], dtype=np.int64)

    def append(self, run_id: str, query: np.ndarray, pairs: Pairs, labels: Labels) -> None:
        """Append answers to queries ``query`` (indices within the run) of run ``run_id``."""
        records = [{"run": run_id, "query": int(q), "first": int(a), "second": int(b), "length": pairs.length,
                    "choice": int(c), "confidence": round(float(p), 6)}
                   for q, a, b, c, p in zip(query, pairs.first, pairs.second, labels.choice, labels.confidence)]
        with self._locked():
            self._append(self.labels_path, records)

    def load(self, runs: Sequence[str] | None = None) -> PreferenceData:
        """Every answered pair (or those of ``runs``), in the order they were appended; duplicates keep the last."""
        latest: dict[tuple[str, int], dict[str, Any]] = {}
        for r in _read_lines(self.labels_path):
            if runs is None or r["run"] in runs:
                latest[(r["run"], r["query"])] = r
        rows = list(latest.values())
        n_steps = self.store.n_steps
        bad = [r for r in rows if max(r["first"], r["second"]) + r["length"] > n_steps]
        if bad:
            raise StoreError(f"{self.labels_path}: query {bad[0]['query']} of run {bad[0]['run']}: expected segments "
                             f"within the store's {n_steps} steps, found one starting at {max(bad[0]['first'], bad[0]['second'])}")
        col = lambda k, dt: np.array([r[k] for r in rows], dtype=dt)  # noqa: E731
        return PreferenceData(first=col("first", np.int64), second=col("second", np.int64), length=col("length", np.int64),
                              choice=col("choice", np.int8), confidence=col("confidence", np.float32),
                              run=col("run", object), query=col("query", np.int64))
