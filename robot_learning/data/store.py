"""The episode store: a Zarr v3 group of time-concatenated arrays with episode boundaries in ``meta/``.

Layout (DESIGN.md section 3)::

    <name>.zarr/
      attrs: format, format_version, task_spec, fps, created_at, source, info (schema + counters)
      data/obs/<key>        (T, ...)  low-dim float32; images uint8 (T, H, W, 3)
      data/action           (T, A)    float32
      data/reward/<source>  (T,)      float32, NaN where a source has no label; provenance in its attrs
      data/terminal         (T,)      bool (true terminal, not a time limit)
      data/timestamp        (T,)      float64 seconds since the episode started
      data/<extra>          (T, ...)  recorder streams: header stamps, receive times, ...
      meta/episode_ends     (E,)      int64 exclusive end of each episode: the commit point
      meta/episode/<field>  (E,)      success, task, operator, start_time, source, seed, ...
      meta/stats            attrs + reservoirs: per-key min/max/mean/std/quantiles

Commit protocol: data arrays are appended first, then the episode's ``meta/episode`` fields, then
``meta/episode_ends``. An episode exists once its end is written. Everything past the last committed
end is a crash leftover; opening for append truncates it (and says so), opening read-only ignores it.
Every file write is atomic (zarr's LocalStore writes a temporary file and renames it), so a kill at any
point leaves each file either old or new. Nothing committed is ever rewritten with different values.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from robot_learning.data import stats as st
from robot_learning.spec import SpecError, TaskSpec

if TYPE_CHECKING:  # the writer module imports this one
    from robot_learning.data.writer import EpisodeWriter

log = logging.getLogger(__name__)

FORMAT = "robot_learning.episodes"
FORMAT_VERSION = 1
LOCK_FILE = ".writer.lock"

#: Per-step fields every store has besides observations and rewards.
CORE_ARRAYS = ("action", "terminal", "timestamp")
#: Episodes per chunk of meta/episode arrays: every commit re-encodes the last chunk, so keep it small
#: (appending one text value cost 36 ms with 65536-episode chunks, 4.9 ms with 1024).
META_CHUNK = 1024
#: Fill value for steps that have no value for an array (a reward source added later, a new extra).
FILL = {"f": np.nan, "i": -1, "u": 0, "b": False}


class StoreError(RuntimeError):
    """A store is missing, malformed, truncated or used wrongly; the message names path and field."""


@dataclass(frozen=True)
class StorageOptions:
    """How arrays are chunked and compressed (measurements.md: Zarr chunking)."""

    # Steps per chunk of low-dimensional arrays: large chunks, few files, fast sequential loads.
    lowdim_chunk_steps: int = 4096
    # Frames per image chunk: one frame per chunk makes a random frame cost ~1 ms to read.
    image_chunk_frames: int = 1
    # Frames per image shard file (zarr v3 sharding): few files, faster streaming writes than per-frame files.
    image_shard_frames: int = 64
    # Blosc compressor for low-dim arrays (zstd + bitshuffle: diffusion_policy's 'disk' preset).
    lowdim_codec: str = "zstd"
    lowdim_level: int = 3
    # Blosc compressor for images: zstd level 1 wrote 143 MB/s at ratio 4.7 here (measurements.md).
    image_codec: str = "zstd"
    image_level: int = 1


@dataclass
class RecoveryReport:
    """What opening a store for append found and removed: leftovers of an interrupted write."""

    truncated: dict[str, tuple[int, int]] = field(default_factory=dict)
    partial_files_removed: int = 0
    stats_recomputed: bool = False

    @property
    def clean(self) -> bool:
        return not self.truncated and not self.partial_files_removed and not self.stats_recomputed

    def __str__(self) -> str:
        if self.clean:
            return "no crash leftovers"
        parts = [f"{name}: {old} -> {new} rows" for name, (old, new) in sorted(self.truncated.items())]
        if self.partial_files_removed:
            parts.append(f"{self.partial_files_removed} partial file(s) removed")
        if self.stats_recomputed:
            parts.append("statistics recomputed")
        return "recovered crash leftovers (uncommitted data dropped, committed data untouched): " + "; ".join(parts)


@dataclass
class Episode:
    """One committed episode read back from a store."""

    index: int
    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: dict[str, np.ndarray]
    terminal: np.ndarray
    timestamp: np.ndarray
    extras: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.action)


def _codec(name: str, level: int, typesize: int) -> BloscCodec:
    shuffle = "bitshuffle" if typesize > 1 else "noshuffle"
    return BloscCodec(cname=name, clevel=level, shuffle=shuffle)


def walk_arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array]]:
    """Yield (path relative to ``group``, array) for every array below ``group``, sorted."""
    for name, member in sorted(group.members(), key=lambda kv: kv[0]):
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Array):
            yield path, member
        else:
            yield from walk_arrays(member, path + "/")


class EpisodeStore:
    """A Zarr episode store opened read-only (``mode='r'``) or for appending (``mode='a'``).

    Only committed data is ever visible: every read is bounded by ``meta/episode_ends``.
    """

    def __init__(self, path: Path, root: zarr.Group, spec: TaskSpec, mode: str, lock_fd: int | None,
                 options: StorageOptions, recovery: RecoveryReport):
        self.path = path
        self.root = root
        self.spec = spec
        self.mode = mode
        self.options = options
        self.recovery = recovery
        self._lock_fd = lock_fd
        self._writer_active = False
        self._load_index()

    # ================================================================================ opening
    @classmethod
    def create(cls, path: str | os.PathLike, spec: TaskSpec, *, source: str = "unknown", overwrite: bool = False,
               options: StorageOptions | None = None) -> EpisodeStore:
        """Create an empty store for ``spec`` (``overwrite`` replaces an existing one)."""
        path = Path(path)
        options = options or StorageOptions()
        if path.exists():
            if not overwrite:
                raise StoreError(f"{path}: cannot create a store here: expected no file or directory, found one "
                                 "(pass overwrite=True / overwrite=true to replace it)")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        root = zarr.open_group(zarr.storage.LocalStore(path), mode="w-", zarr_format=3)
        root.attrs.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task_spec": spec.to_dict(),
            "fps": spec.control_hz,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source,
            "storage": options.__dict__,
        })
        data = root.create_group("data")
        data.create_group("obs")
        data.create_group("reward")
        meta = root.create_group("meta")
        meta.create_group("episode")
        meta.create_group("stats")
        lowdim = _codec(options.lowdim_codec, options.lowdim_level, 4)
        for o in spec.observations:
            if o.is_image:
                frames = options.image_chunk_frames
                data.create_array(f"obs/{o.key}", shape=(0, *o.shape), dtype="uint8", chunks=(frames, *o.shape),
                                  shards=(options.image_shard_frames, *o.shape) if options.image_shard_frames else None,
                                  compressors=_codec(options.image_codec, options.image_level, 1), fill_value=0)
            else:
                data.create_array(f"obs/{o.key}", shape=(0, *o.shape), dtype="float32",
                                  chunks=(options.lowdim_chunk_steps, *o.shape), compressors=lowdim, fill_value=np.nan)
        data.create_array("action", shape=(0, spec.action.dim), dtype="float32",
                          chunks=(options.lowdim_chunk_steps, spec.action.dim), compressors=lowdim, fill_value=np.nan)
        data.create_array("terminal", shape=(0,), dtype="bool", chunks=(options.lowdim_chunk_steps,),
                          compressors=_codec(options.lowdim_codec, options.lowdim_level, 1), fill_value=False)
        data.create_array("timestamp", shape=(0,), dtype="float64", chunks=(options.lowdim_chunk_steps,),
                          compressors=_codec(options.lowdim_codec, options.lowdim_level, 8), fill_value=np.nan)
        meta.create_array("episode_ends", shape=(0,), dtype="int64", chunks=(META_CHUNK,), fill_value=0)
        lock_fd = cls._acquire_lock(path)
        store = cls(path, root, spec, "a", lock_fd, options, RecoveryReport())
        store._write_info()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, check: bool = True) -> EpisodeStore:
        """Open an existing store; ``mode='a'`` takes the writer lock and recovers crash leftovers.

        ``check=False`` (read-only only) skips the committed-data check so that ``dataset verify`` can
        list every problem of a truncated store (:meth:`committed_problems`) instead of the first.
        """
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode: expected 'r' or 'a', found {mode!r}")
        if mode == "a" and not check:
            raise ValueError("check: expected True with mode='a' (appending needs intact committed data), found False")
        if not (path / "zarr.json").exists():
            raise StoreError(f"{path}: expected an episode store (a Zarr v3 group with format '{FORMAT}'), "
                             f"found {'no such path' if not path.exists() else 'no zarr.json in it'}")
        try:
            root = zarr.open_group(zarr.storage.LocalStore(path, read_only=(mode == "r")), mode="r" if mode == "r" else "r+")
        except Exception as e:  # noqa: BLE001 - any zarr failure here means the metadata is unreadable
            raise StoreError(f"{path}: store metadata unreadable ({type(e).__name__}: {e})") from None
        attrs = dict(root.attrs)
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{path}: attribute 'format': expected '{FORMAT}', found {attrs.get('format')!r}")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path}: attribute 'format_version': expected {FORMAT_VERSION}, "
                             f"found {attrs.get('format_version')!r}")
        try:
            spec = TaskSpec.from_dict(attrs["task_spec"], source=f"{path} (attrs.task_spec)")
        except KeyError:
            raise StoreError(f"{path}: attribute 'task_spec': expected the task description, found nothing") from None
        for required in ("data", "meta", "meta/episode_ends", "data/action", "data/terminal"):
            if required not in root:
                raise StoreError(f"{path}: '{required}': expected it in every store, found it missing (truncated store?)")
        options = StorageOptions(**attrs.get("storage", {}))
        lock_fd = cls._acquire_lock(path) if mode == "a" else None
        store = cls(path, root, spec, mode, lock_fd, options, RecoveryReport())
        if check:
            store._check_committed()
        if mode == "a":
            store.recovery = store._recover()
            if not store.recovery.clean:
                log.warning("%s: %s", path, store.recovery)
        elif store.pending_leftover():
            log.info("%s: uncommitted rows past the last episode are ignored (open with mode='a' to remove them)", path)
        return store

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, spec: TaskSpec, *, source: str = "unknown",
                       options: StorageOptions | None = None) -> EpisodeStore:
        """Append to the store at ``path`` if it exists (its task must match ``spec``), else create it."""
        path = Path(path)
        if not path.exists():
            return cls.create(path, spec, source=source, options=options)
        store = cls.open(path, mode="a")
        diffs = store.spec.differences(spec)
        if diffs:
            store.close()
            raise StoreError(f"{path}: cannot append episodes of task '{spec.name}' to a store of task "
                             f"'{store.spec.name}': " + "; ".join(diffs))
        return store

    @staticmethod
    def _acquire_lock(path: Path) -> int:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(f"{path}: expected no other writer, found the store open for writing by process {owner}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def close(self) -> None:
        """Release the writer lock (the store stays readable through this object)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ================================================================================ index
    def _load_index(self) -> None:
        # Array handles are listed once and kept: every zarr lookup reads a zarr.json, and the writer
        # touches every array on every flush. Only this object creates or deletes arrays (single writer).
        self._data: dict[str, zarr.Array] = dict(walk_arrays(self.root["data"]))
        self._meta: dict[str, zarr.Array] = dict(walk_arrays(self.root["meta/episode"]))
        self._ends_array: zarr.Array = self.root["meta/episode_ends"]
        # One handle on meta/stats, through which all its attributes are written: a second handle would hold
        # stale attributes and overwrite newer ones when it writes.
        self._stats_g: zarr.Group = self.root["meta/stats"]
        self._reservoirs: dict[str, zarr.Array] = dict(walk_arrays(self._stats_g))
        self._reservoir_values: dict[str, np.ndarray] = {}  # what this object last wrote: no re-read per commit
        self._ends = np.asarray(self._ends_array[:], dtype=np.int64)
        self._episode_meta_cache: dict[str, np.ndarray] | None = None

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self._ends[:-1]]).astype(np.int64) if len(self._ends) else np.zeros(0, np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[0], self._ends])).astype(np.int64)

    @property
    def n_episodes(self) -> int:
        return int(len(self._ends))

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return self.n_episodes

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.root.attrs)

    @property
    def info(self) -> dict[str, Any]:
        """The store's schema and counters (LeRobot's meta/info.json in spirit)."""
        return dict(self.root.attrs.get("info", {}))

    def data_arrays(self) -> dict[str, zarr.Array]:
        """Every per-step array, keyed by its path under ``data/`` (e.g. ``obs/front``, ``reward/env``)."""
        return dict(self._data)

    def meta_arrays(self) -> dict[str, zarr.Array]:
        return dict(self._meta)

    @property
    def reward_sources(self) -> list[str]:
        return sorted(name[len("reward/"):] for name in self._data if name.startswith("reward/"))

    def reward_provenance(self, source: str) -> dict[str, Any]:
        return dict(self._data[f"reward/{source}"].attrs.get("provenance", {}))

    @property
    def extra_keys(self) -> list[str]:
        skip = ("obs/", "reward/")
        return [n for n in self.data_arrays() if not n.startswith(skip) and n not in CORE_ARRAYS]

    def pending_leftover(self) -> dict[str, int]:
        """Arrays holding rows past the last committed end (what recovery would remove)."""
        n, e = self.n_steps, self.n_episodes
        out = {f"data/{name}": a.shape[0] for name, a in self.data_arrays().items() if a.shape[0] > n}
        out.update({f"meta/episode/{name}": a.shape[0] for name, a in self.meta_arrays().items() if a.shape[0] > e})
        return out

    def committed_problems(self) -> list[str]:
        """Every way committed rows are missing or the boundaries are malformed (a truncated store)."""
        problems = []
        ends = self._ends
        if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            bad = int(np.argmax(np.diff(np.concatenate([[0], ends])) <= 0))
            problems.append(f"{self.path}: 'meta/episode_ends': expected strictly increasing positive ends, "
                            f"found {ends[max(0, bad - 1):bad + 2].tolist()} at episode {bad}")
        n, e = self.n_steps, self.n_episodes
        for name, a in self.data_arrays().items():
            if a.shape[0] < n:
                problems.append(f"{self.path}: 'data/{name}': expected at least {n} committed rows, found {a.shape[0]} "
                                "(truncated store: committed data is missing)")
        for name, a in self.meta_arrays().items():
            if a.shape[0] < e:
                problems.append(f"{self.path}: 'meta/episode/{name}': expected {e} rows (one per episode), "
                                f"found {a.shape[0]} (truncated store)")
        return problems

    def _check_committed(self) -> None:
        """Fail with the first of :meth:`committed_problems`, if any."""
        problems = self.committed_problems()
        if problems:
            raise StoreError(problems[0])

    def _truncate_uncommitted(self) -> dict[str, tuple[int, int]]:
        """Cut every array back to the committed episodes; returns {array: (rows before, rows after)}."""
        n, e = self.n_steps, self.n_episodes
        cut: dict[str, tuple[int, int]] = {}
        for name, a in self.data_arrays().items():
            if a.shape[0] > n:
                cut[f"data/{name}"] = (a.shape[0], n)
                a.resize((n, *a.shape[1:]))
        for name, a in self.meta_arrays().items():
            if a.shape[0] > e:
                cut[f"meta/episode/{name}"] = (a.shape[0], e)
                a.resize((e,))
        return cut

    def _recover_interrupted_commit(self) -> RecoveryReport:
        """After a commit cut short in this process (Ctrl-C): re-read the index from disk, then recover as
        opening for append does. Before the commit point the episode's rows go; past it the episode stays
        and its statistics and info are completed."""
        self._load_index()
        return self._recover()

    def _recover(self) -> RecoveryReport:
        report = RecoveryReport()
        for partial in self.path.rglob("*.partial"):
            partial.unlink(missing_ok=True)
            report.partial_files_removed += 1
        report.truncated.update(self._truncate_uncommitted())
        n = self.n_steps
        if self._stats_g.attrs.get("n_steps", 0) != n:
            self.refresh_stats()
            report.stats_recomputed = True
        if not report.clean:
            self._write_info()
        return report

    # ================================================================================ reading
    def _episode_bounds(self, index: int) -> tuple[int, int]:
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f"{self.path}: episode {index}: expected an index in [0, {self.n_episodes}), found {index}")
        index %= self.n_episodes
        start = int(self._ends[index - 1]) if index else 0
        return start, int(self._ends[index])

    def episode_meta(self) -> dict[str, np.ndarray]:
        """Every ``meta/episode`` field for the committed episodes."""
        if self._episode_meta_cache is None:
            e = self.n_episodes
            self._episode_meta_cache = {name: np.asarray(a[:e]) for name, a in self.meta_arrays().items()}
        return self._episode_meta_cache

    def episode(self, index: int, keys: Sequence[str] | None = None) -> Episode:
        """Read one committed episode; ``keys`` restricts the observation keys read."""
        start, stop = self._episode_bounds(index)
        data = self._data
        obs_keys = keys if keys is not None else self.spec.obs_keys
        extras = {name: np.asarray(data[name][start:stop]) for name in self.extra_keys}
        return Episode(
            index=index % self.n_episodes,
            obs={k: np.asarray(data[f"obs/{k}"][start:stop]) for k in obs_keys},
            action=np.asarray(data["action"][start:stop]),
            reward={s: np.asarray(data[f"reward/{s}"][start:stop]) for s in self.reward_sources},
            terminal=np.asarray(data["terminal"][start:stop]),
            timestamp=np.asarray(data["timestamp"][start:stop]),
            extras=extras,
            meta={k: v[index % self.n_episodes].item() if hasattr(v[index], "item") else v[index]
                  for k, v in self.episode_meta().items()},
        )

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of ``data/<name>`` (bounded by the committed length)."""
        if name not in self._data:
            raise StoreError(f"{self.path}: 'data/{name}': expected one of {sorted(self._data)}, found no such array")
        stop = self.n_steps if stop is None else min(stop, self.n_steps)
        return np.asarray(self._data[name][start:stop])

    def reward(self, source: str | None = None) -> np.ndarray:
        """The committed per-step rewards of ``source`` (default: the task's default reward)."""
        source = source or self.default_reward_source()
        if source not in self.reward_sources:
            raise StoreError(f"{self.path}: reward source '{source}': expected one of {self.reward_sources}, found none")
        return self.read(f"reward/{source}")

    def default_reward_source(self) -> str:
        sources = self.reward_sources
        if self.spec.default_reward in sources:
            return self.spec.default_reward
        if len(sources) == 1:
            return sources[0]
        raise StoreError(f"{self.path}: reward source: expected '{self.spec.default_reward}' (the task default) or a "
                         f"single source, found {sources or 'none'}; choose one with dataset.reward=<source>")

    # ================================================================================ writing
    def writer(self, **kwargs: Any) -> EpisodeWriter:
        """A streaming writer that appends episodes (one at a time) to this store."""
        from robot_learning.data.writer import EpisodeWriter

        self._require_append("write episodes")
        if self._writer_active:
            raise StoreError(f"{self.path}: expected one writer per store, found one already active")
        return EpisodeWriter(self, **kwargs)

    def _require_append(self, what: str) -> None:
        if self.mode != "a" or self._lock_fd is None:
            raise StoreError(f"{self.path}: cannot {what}: expected the store opened with mode='a', found mode='{self.mode}'")

    def ensure_array(self, name: str, sample: np.ndarray) -> zarr.Array:
        """Return ``data/<name>``, creating it for values like ``sample`` (one step) if needed.

        A new array covers the committed steps with its fill value (NaN / -1 / False), so every data
        array always has one row per step.
        """
        full = f"data/{name}"
        sample = np.asarray(sample)
        if name in self._data:
            a = self._data[name]
            if tuple(a.shape[1:]) != sample.shape:
                raise SpecError(f"{self.path}: '{full}': expected per-step shape {tuple(a.shape[1:])}, found {sample.shape}")
            return a
        self._require_append(f"create '{full}'")
        dtype = np.dtype("float32") if sample.dtype.kind == "f" and sample.dtype.itemsize <= 4 else sample.dtype
        if dtype.kind not in FILL:
            raise SpecError(f"{self.path}: '{full}': expected numeric or bool values, found dtype {sample.dtype}")
        steps = self.options.lowdim_chunk_steps
        a = self.root.create_array(full, shape=(self.n_steps, *sample.shape), dtype=dtype,
                                   chunks=(steps, *sample.shape), fill_value=FILL[dtype.kind],
                                   compressors=_codec(self.options.lowdim_codec, self.options.lowdim_level, dtype.itemsize))
        self._data[name] = a
        return a

    def ensure_meta_field(self, name: str, value: Any) -> zarr.Array:
        """Return ``meta/episode/<name>``, creating it (filled for earlier episodes) if needed."""
        full = f"meta/episode/{name}"
        if name in self._meta:
            return self._meta[name]
        self._require_append(f"create '{full}'")
        if isinstance(value, str):
            a = self.root.create_array(full, shape=(self.n_episodes,), dtype=str, chunks=(META_CHUNK,), fill_value="")
        else:
            dtype = np.asarray(value).dtype
            if dtype.kind not in FILL:
                raise SpecError(f"{self.path}: '{full}': expected a bool, number or string, found {type(value).__name__}")
            a = self.root.create_array(full, shape=(self.n_episodes,), dtype=dtype, chunks=(META_CHUNK,),
                                       fill_value=FILL[dtype.kind])
        self._meta[name] = a
        self._episode_meta_cache = None
        return a

    def _commit_episode(self, length: int, meta: Mapping[str, Any], pending_stats: Mapping[str, tuple[st.Moments, list]]) -> int:
        """Append one episode's meta fields, then its end (the commit point), then the statistics."""
        e, end = self.n_episodes, self.n_steps + length
        fields = dict(meta)
        for name in self.meta_arrays():
            fields.setdefault(name, None)
        for name, value in fields.items():
            a = self.ensure_meta_field(name, value if value is not None else "")
            if value is None:
                value = a.fill_value
            a.resize((e + 1,))
            a[e] = value
        ends = self._ends_array
        ends.resize((e + 1,))
        ends[e] = end
        self._ends = np.append(self._ends, np.int64(end))
        self._episode_meta_cache = None
        self._merge_stats(pending_stats)
        self._write_info()
        return e

    def add_reward(self, source: str, values: np.ndarray, provenance: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Write a full reward source for every committed step, with its provenance.

        Steps beyond ``len(values)`` (episodes added later) read as NaN: unlabelled.
        """
        self._require_append(f"write reward source '{source}'")
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (self.n_steps,):
            raise SpecError(f"{self.path}: reward source '{source}': expected shape ({self.n_steps},) "
                            f"(one value per committed step), found {values.shape}")
        if not source.replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"{self.path}: reward source name: expected letters, digits, '_' or '-', found {source!r}")
        full = f"data/reward/{source}"
        if f"reward/{source}" in self._data:
            if not overwrite:
                raise StoreError(f"{self.path}: reward source '{source}': expected a new name, found it already "
                                 "(pass overwrite=True to replace it)")
            del self.root[full]
            del self._data[f"reward/{source}"]
        a = self.ensure_array(f"reward/{source}", values[0] if len(values) else np.float32(0))
        a[:] = values
        prov = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_steps": self.n_steps, **_jsonable(dict(provenance))}
        a.attrs["provenance"] = prov
        self.refresh_stats(names=[f"reward/{source}"])
        self._write_info()

    def set_reward_provenance(self, source: str, provenance: Mapping[str, Any]) -> None:
        """Record where an existing reward source came from (e.g. ``env`` rewards written step by step)."""
        self._require_append(f"set the provenance of reward source '{source}'")
        if source not in self.reward_sources:
            raise StoreError(f"{self.path}: reward source '{source}': expected one of {self.reward_sources}, found none")
        prov = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **_jsonable(dict(provenance))}
        self._data[f"reward/{source}"].attrs["provenance"] = prov

    # ================================================================================ statistics
    def _merge_stats(self, pending: Mapping[str, tuple[st.Moments, list]]) -> None:
        g = self._stats_g
        moments = dict(g.attrs.get("moments", {}))
        seen = dict(g.attrs.get("seen", {}))
        summary = dict(g.attrs.get("summary", {}))
        for name, (m, rows) in pending.items():
            if name in moments:
                m = st.Moments.from_dict(moments[name]).merged(m)
            if name in self._reservoir_values:
                reservoir = self._reservoir_values[name]
            elif name in self._reservoirs:
                reservoir = np.asarray(self._reservoirs[name][:])
            else:
                reservoir = np.full((st.RESERVOIR_SIZE, len(m.count)), np.nan, dtype=np.float32)
                self._reservoirs[name] = g.create_array(name, shape=reservoir.shape, dtype="float32",
                                                        chunks=reservoir.shape, fill_value=np.nan)
            count = int(seen.get(name, 0))
            for block in rows:
                reservoir, count = st.reservoir_update(reservoir, count, block)
            self._reservoirs[name][:] = reservoir
            self._reservoir_values[name] = reservoir
            moments[name] = m.to_dict()
            seen[name] = count
            summary[name] = st.summarize(m, reservoir, count)
        g.update_attributes({"moments": moments, "seen": seen, "summary": summary, "n_steps": self.n_steps})

    def refresh_stats(self, names: Sequence[str] | None = None, block_steps: int = 8192) -> None:
        """Recompute statistics from the committed data (all stat keys, or ``names``)."""
        g = self._stats_g
        targets = [n for n in self.stat_keys() if names is None or n in names]
        moments = {} if names is None else dict(g.attrs.get("moments", {}))
        seen = {} if names is None else dict(g.attrs.get("seen", {}))
        summary = {} if names is None else dict(g.attrs.get("summary", {}))
        for name in targets:
            for key in (moments, seen, summary):
                key.pop(name, None)
            if name in self._reservoirs:
                del g[name]
                del self._reservoirs[name]
                self._reservoir_values.pop(name, None)
        g.update_attributes({"moments": moments, "seen": seen, "summary": summary})
        n = self.n_steps
        for start in range(0, n, block_steps):
            pending = {}
            for name in targets:
                rows = st.stat_rows(name, self.read(name, start, start + block_steps))
                pending[name] = (st.Moments.of(rows), [rows])
            self._merge_stats(pending)
        g.update_attributes({"n_steps": n})

    def stat_keys(self) -> list[str]:
        """The data arrays that carry statistics: observations, action and every reward source."""
        return [f"obs/{k}" for k in self.spec.obs_keys] + ["action"] + [f"reward/{s}" for s in self.reward_sources]

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-key count/mean/std/min/max/q01/q10/q50/q90/q99 (lists per dimension or channel)."""
        return dict(self._stats_g.attrs.get("summary", {}))

    # ================================================================================ schema
    def _write_info(self) -> None:
        features = {name: {"dtype": str(a.dtype), "shape": list(a.shape[1:])} for name, a in self.data_arrays().items()}
        self.root.attrs["info"] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.spec.name,
            "fps": self.spec.control_hz,
            "total_episodes": self.n_episodes,
            "total_steps": self.n_steps,
            "features": features,
            "episode_fields": sorted(self.meta_arrays()),
            "reward_sources": self.reward_sources,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def __repr__(self) -> str:
        return (f"EpisodeStore({str(self.path)!r}, task={self.spec.name!r}, episodes={self.n_episodes}, "
                f"steps={self.n_steps}, rewards={self.reward_sources}, mode={self.mode!r})")


def _jsonable(x: Any) -> Any:
    """Provenance values as JSON-safe builtins."""
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
