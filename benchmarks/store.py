"""Episode-store benchmark: writer throughput, where a flush and a commit spend their time, and
training-sample throughput from disk vs from memory.

    python benchmarks/store.py           # 10 episodes x 500 steps with cameras; 1M-step low-dim store
    python benchmarks/store.py --quick   # 2 episodes x 200 steps; 50k-step low-dim store

1. Writer: the EpisodeWriter records joint states (7 positions, 7 velocities), a 7-D action and two
   128x128 cameras whose frames look rendered (smooth shading, a moving object, sensor noise), so they
   compress like real ones. Reports steps/s and MB/s of raw data written, and the disk ratio.
2. Profile: every zarr call the writer makes during a flush and a commit is timed and classified
   (metadata rewrites, metadata reads, group listings, chunk reads/writes); the avoidable share is what a
   writer could skip (see :func:`avoidable_share`).
3. Commit layout: what one commit pays to append a value to a meta/episode field chunked (65536,) (the
   store's choice) vs (1024,), text and numeric, and to write the statistics attributes key by key vs once.
4. Sampling: random batches of 256 transitions (obs, action, reward, next obs, done) read straight from a
   low-dim zarr store vs ``TransitionData.from_store(...).sample`` in memory, interleaved in one run.

Results: benchmarks/results/store.json and store.md. The low-dim store is cached under
benchmarks/results/tmp/ (writing 1M steps through the writer takes minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from common import RESULTS_DIR, interleaved, markdown_table, summary, write_results  # benchmarks/common.py

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tensors import TransitionData
from robot_learning.data.tools.common import disk_usage
from robot_learning.data.writer import EpisodeWriter
from robot_learning.spec import SpecError, TaskSpec

CAMERA = (128, 128)
ARM = TaskSpec.from_dict({
    "name": "bench_arm", "text": "benchmark arm", "control_hz": 50, "max_episode_steps": 1000,
    "observations": {"joint_pos": {"shape": [7]}, "joint_vel": {"shape": [7]},
                     "front": {"shape": [*CAMERA, 3], "kind": "rgb"}, "wrist": {"shape": [*CAMERA, 3], "kind": "rgb"}},
    "action": {"dim": 7, "low": -1.0, "high": 1.0},
})
LOWDIM = TaskSpec.from_dict({
    "name": "bench_lowdim", "text": "benchmark low-dim", "control_hz": 50, "max_episode_steps": 1000,
    "observations": {"state": {"shape": [17]}}, "action": {"dim": 6, "low": -1.0, "high": 1.0},
})
BATCH = 256


# ===================================================================================== synthetic data
def camera_frames(n: int, seed: int) -> np.ndarray:
    """(n, H, W, 3) uint8 frames that look rendered: a shaded floor and wall, a moving lit sphere, and
    sensor noise (sigma 1 grey level; noiseless MuJoCo renders compress ~4.7x, measurements.md)."""
    rng = np.random.default_rng(seed)
    h, w = CAMERA
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.empty((h, w, 3), np.float32)
    horizon = h * 0.45
    wall = yy < horizon
    base[..., 0] = np.where(wall, 170 + 30 * xx / w, 90 + 60 * (yy - horizon) / h)
    base[..., 1] = np.where(wall, 180 + 20 * yy / h, 80 + 50 * (yy - horizon) / h)
    base[..., 2] = np.where(wall, 200 - 10 * xx / w, 70 + 30 * xx / w)
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        cx, cy, r = w * (0.3 + 0.4 * np.sin(t / 25)), h * (0.6 + 0.1 * np.cos(t / 17)), 14.0
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
        shade = np.clip(1.2 - 0.6 * (((xx - cx + 5) ** 2 + (yy - cy + 5) ** 2) / r**2), 0.3, 1.0)
        img = base.copy()
        inside = d2 < 1
        img[inside] = np.array([200, 40, 40], np.float32) * shade[inside, None]
        img += rng.normal(0, 1.0, img.shape)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def arm_steps(n: int, seed: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """``n`` (observation, action) pairs of a smooth 7-joint trajectory with the two cameras (a frame pool)."""
    rng = np.random.default_rng(seed)
    pool = {"front": camera_frames(64, seed), "wrist": camera_frames(64, seed + 1)}
    q = np.cumsum(rng.normal(0, 0.01, (n, 7)), axis=0).astype(np.float32)
    dq = np.gradient(q, axis=0).astype(np.float32)
    act = np.clip(dq * 50, -1, 1)
    for t in range(n):
        cams = {name: frames[t % len(frames)] for name, frames in pool.items()}
        yield {"joint_pos": q[t], "joint_vel": dq[t], **cams}, act[t]


# ===================================================================================== writer profile
#: zarr calls the profiler times, and what each one does to the files of a LocalStore.
ZARR_CALLS = {
    (zarr.Array, "resize"): "metadata rewrite: Array.resize (array zarr.json)",
    (zarr.core.attributes.Attributes, "__setitem__"): "metadata rewrite: group attributes (zarr.json)",
    (zarr.Group, "update_attributes"): "metadata rewrite: group attributes (zarr.json)",
    (zarr.Group, "__contains__"): "metadata read: 'name' in group (child zarr.json)",
    (zarr.Group, "__getitem__"): "metadata read: group[name] (child zarr.json)",
    (zarr.Group, "members"): "group listing: walk_arrays (every child zarr.json)",
    (zarr.Group, "create_array"): "metadata write: create_array",
    (zarr.Array, "__getitem__"): "chunk read: Array[...] (statistics reservoirs)",
}


def write_label(args: tuple, kwargs: dict) -> str:
    """What an ``Array.__setitem__`` call writes, by the array's place in the store."""
    path, ndim, kind = args[0].path, args[0].ndim, args[0].dtype.kind
    field = "meta/episode text fields" if kind in "OSUT" else "meta/episode numeric fields"
    for prefix, what in (("data/obs", "observation images" if ndim == 4 else "low-dim data"), ("data", "low-dim data"),
                         ("meta/episode_ends", "episode_ends"), ("meta/episode/", field),
                         ("meta/stats", "statistics reservoirs")):
        if path.startswith(prefix):
            return f"chunk write: {what}"
    return f"chunk write: {path}"


def avoidable_share(phase: str, label: str, calls: float) -> float:
    """Fraction of a call kind's time a writer could skip.

    Metadata reads and group listings: all (cache the array handles, which only this writer creates).
    Resizes during a flush: all (grow arrays in chunk-sized steps; readers are bounded by episode_ends and
    recovery already truncates). Attribute writes during a commit: all but two (one for meta/stats, one for
    the root info; ``group.attrs.update(d)`` rewrites the group's zarr.json once per key of ``d``). Resizes
    during a commit (meta fields, episode_ends: the commit itself) and chunk writes are needed.
    """
    if label.startswith(("metadata read", "group listing")):
        return 1.0
    if label.startswith("metadata rewrite: Array.resize"):
        return 1.0 if phase == "flush" else 0.0
    if label.startswith("metadata rewrite: group attributes") and phase == "commit":
        return max(0.0, calls - 2) / calls
    return 0.0


class Profiler:
    """Times the zarr calls of :data:`ZARR_CALLS` and ``Array.__setitem__`` inside writer phases.

    Only the outermost timed call counts, so nested zarr calls are never counted twice.
    """

    def __init__(self) -> None:
        self.time: dict[tuple[str, str], float] = defaultdict(float)
        self.count: dict[tuple[str, str], int] = defaultdict(int)
        self.phase_time: dict[str, list[float]] = defaultdict(list)
        self._phase = "other"
        self._depth = 0

    def _timed(self, label: Callable[[tuple, dict], str], fn: Callable) -> Callable:
        prof = self

        def wrapper(*args, **kwargs):
            if prof._depth:
                return fn(*args, **kwargs)
            prof._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                prof._depth -= 1
                key = (prof._phase, label(args, kwargs))
                prof.time[key] += time.perf_counter() - start
                prof.count[key] += 1

        return wrapper

    def _phased(self, name: str, fn: Callable) -> Callable:
        prof = self

        def wrapper(*args, **kwargs):
            outer, prof._phase = prof._phase, name
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                prof.phase_time[name].append(time.perf_counter() - start)
                prof._phase = outer

        return wrapper

    @contextmanager
    def active(self) -> Iterator[Profiler]:
        """Patch the zarr calls and the writer's flush/commit for the duration of the block."""
        patches = {(cls, name): self._timed(lambda a, k, text=text: text, getattr(cls, name))
                   for (cls, name), text in ZARR_CALLS.items()}
        patches[(zarr.Array, "__setitem__")] = self._timed(write_label, zarr.Array.__setitem__)
        patches[(EpisodeWriter, "_flush")] = self._phased("flush", EpisodeWriter._flush)
        patches[(EpisodeStore, "_commit_episode")] = self._phased("commit", EpisodeStore._commit_episode)
        originals = {key: getattr(*key) for key in patches}
        for (cls, name), fn in patches.items():
            setattr(cls, name, fn)
        try:
            yield self
        finally:
            for (cls, name), fn in originals.items():
                setattr(cls, name, fn)

    def breakdown(self, phase: str) -> list[dict[str, Any]]:
        """Per-call-kind milliseconds and counts per ``phase`` call (flush or commit), largest first."""
        calls = max(1, len(self.phase_time[phase]))
        rows = []
        for (p, label), t in self.time.items():
            if p != phase:
                continue
            n, ms = self.count[(p, label)] / calls, 1e3 * t / calls
            rows.append({"phase": phase, "zarr call": label, "calls per phase": n, "ms per phase": ms,
                         "avoidable ms": ms * avoidable_share(phase, label, n)})
        rows.sort(key=lambda r: -r["ms per phase"])
        rows.append({"phase": phase, "zarr call": "(total, incl. encoding and Python)", "calls per phase": 1.0,
                     "ms per phase": 1e3 * sum(self.phase_time[phase]) / calls,
                     "avoidable ms": sum(r["avoidable ms"] for r in rows)})
        return rows


def bench_writer(path: Path, episodes: int, steps: int, flush_steps: int) -> dict[str, Any]:
    """Record ``episodes`` x ``steps`` arm steps; throughput, sizes and the flush/commit profile."""
    store = EpisodeStore.create(path, ARM, source="benchmark", overwrite=True)
    data = [list(arm_steps(steps, seed=e)) for e in range(episodes)]
    profiler = Profiler()
    with profiler.active(), store.writer(flush_steps=flush_steps) as writer:
        start, cpu_start = time.perf_counter(), time.process_time()
        for e, ep in enumerate(data):
            writer.begin(seed=e)
            for obs, action in ep:
                writer.add_step(obs, action, reward=0.0)
            writer.end(success=True)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n = episodes * steps
    raw = sum(a.dtype.itemsize * int(np.prod(a.shape)) for a in store.data_arrays().values())
    disk = disk_usage(path / "data")
    flush, commit = summary(profiler.phase_time["flush"]), summary(profiler.phase_time["commit"])
    rows = profiler.breakdown("flush") + profiler.breakdown("commit")
    avoid = {r["phase"]: r["avoidable ms"] for r in rows if r["zarr call"].startswith("(total")}
    saved = (avoid["flush"] * len(profiler.phase_time["flush"]) + avoid["commit"] * episodes) / 1e3
    return {
        "episodes": episodes, "steps_per_episode": steps, "flush_steps": flush_steps, "seconds": elapsed,
        "steps_per_s": n / elapsed, "cpu_seconds": cpu, "steps_per_cpu_s": n / cpu,
        "raw_MB_per_s": raw / 1e6 / elapsed, "raw_MB": raw / 1e6, "disk_MB": disk / 1e6,
        "compression_ratio": raw / disk, "flush_ms": {k: 1e3 * v for k, v in flush.items() if k != "n"},
        "flushes": flush["n"], "commit_ms": {k: 1e3 * v for k, v in commit.items() if k != "n"},
        "profile": rows, "avoidable_ms_per_flush": avoid["flush"], "avoidable_ms_per_commit": avoid["commit"],
        "steps_per_s_without_avoidable": n / max(elapsed - saved, 1e-9),
    }


# ===================================================================================== commit layout
def bench_commit_layout(path: Path, repeats: int) -> list[dict[str, Any]]:
    """Per-commit cost of appending one meta value at two chunk lengths, and of writing the statistics
    attributes key by key vs at once, side by side (each case grows its own array or group)."""
    root = zarr.open_group(zarr.storage.LocalStore(path), mode="w")
    text = "move the orange ball to the green goal"
    cases: dict[str, Callable[[], Any]] = {}
    for chunk in (65536, 1024):
        for kind, dtype, value, fill in (("text", str, text, ""), ("int64", "int64", 7, 0)):
            a = root.create_array(f"{kind}_{chunk}", shape=(0,), dtype=dtype, chunks=(chunk,), fill_value=fill)

            def append(a=a, value=value) -> None:
                n = a.shape[0]
                a.resize((n + 1,))
                a[n] = value

            cases[f"append one {kind} meta value, chunks ({chunk},)"] = append
    stats = {"moments": {f"obs/k{i}": {"count": [1.0] * 20, "total": [2.0] * 20} for i in range(6)},
             "seen": {f"obs/k{i}": 100 for i in range(6)},
             "summary": {f"obs/k{i}": {q: [0.5] * 20 for q in ("mean", "std", "q01", "q50", "q99")} for i in range(6)},
             "n_steps": 1000}
    keyed, once = root.create_group("stats_keyed"), root.create_group("stats_once")
    cases["statistics attrs: group.attrs.update (one write per key)"] = lambda: keyed.attrs.update(stats)
    cases["statistics attrs: group.update_attributes (one write)"] = lambda: once.update_attributes(stats)
    times = interleaved(cases, repeats=repeats, warmup=2)
    return [{"operation": name, "ms (median)": 1e3 * summary(t)["median"], "ms (p90)": 1e3 * summary(t)["p90"]}
            for name, t in times.items()]


# ===================================================================================== sampling
def lowdim_store(path: Path, steps: int, episode_steps: int = 1000) -> EpisodeStore:
    """A cached low-dim store of ``steps`` steps (random-walk states, smooth actions) written by the writer."""
    if path.exists():
        try:
            store = EpisodeStore.open(path)
        except (StoreError, SpecError) as e:
            print(f"rebuilding the cached store: {e}", flush=True)
        else:
            if store.n_steps == steps:
                return store
        shutil.rmtree(path)
    print(f"building {path} ({steps} steps, cached for later runs) ...", flush=True)
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(path, LOWDIM, source="benchmark")
    with store.writer(flush_steps=4096, validate=False) as w:
        for e in range(steps // episode_steps):
            state = np.cumsum(rng.normal(0, 0.05, (episode_steps, 17)), axis=0).astype(np.float32)
            action = np.tanh(rng.normal(0, 1, (episode_steps, 6))).astype(np.float32)
            reward = rng.normal(size=episode_steps).astype(np.float32)
            w.begin(seed=e)
            for t in range(episode_steps):
                terminal = t == episode_steps - 1 and e % 3 == 0
                w.add_step({"state": state[t]}, action[t], reward=float(reward[t]), terminal=terminal)
            w.end(success=e % 3 == 0)
    store.close()
    return EpisodeStore.open(path)


def disk_batch(store: EpisodeStore, rng: np.random.Generator) -> Callable[[], dict[str, np.ndarray]]:
    """A function reading one random batch of transitions straight from the zarr arrays."""
    ends = store.episode_ends
    end_of_row = np.repeat(ends, store.episode_lengths)
    terminal = store.read("terminal")
    valid = np.flatnonzero((np.arange(store.n_steps) + 1 < end_of_row) | terminal)
    arrays = {name: store.root[f"data/{name}"] for name in ("obs/state", "action", "reward/env", "terminal")}

    def batch() -> dict[str, np.ndarray]:
        i = valid[rng.integers(len(valid), size=BATCH)]
        nxt = np.where(i + 1 < end_of_row[i], i + 1, i)
        out = {name: a.oindex[i] for name, a in arrays.items()}
        out["next_obs/state"] = arrays["obs/state"].oindex[nxt]
        return out

    return batch


def bench_sampling(store: EpisodeStore, disk_batches: int, memory_batches: int) -> dict[str, Any]:
    """Transitions/s at batch 256: zarr on disk vs TransitionData in memory, interleaved."""
    start = time.perf_counter()
    data = TransitionData.from_store(store, device="cpu")
    load_s = time.perf_counter() - start
    gen = torch.Generator().manual_seed(0)
    per_call = max(1, memory_batches // 20)
    disk = disk_batch(store, np.random.default_rng(0))
    times = interleaved({"disk (zarr, random batches)": disk,
                         "memory (TransitionData.sample)": lambda: [data.sample(BATCH, gen) for _ in range(per_call)]},
                        repeats=disk_batches, warmup=1)
    rows = []
    for name, t in times.items():
        batches = 1 if name.startswith("disk") else per_call
        med = summary(t)["median"] / batches
        rows.append({"source": name, "batches timed": len(t) * batches, "ms per batch": 1e3 * med,
                     "batches/s": 1 / med, "transitions/s": BATCH / med})
    rows[1]["speed-up vs disk"] = rows[0]["ms per batch"] / rows[1]["ms per batch"]
    return {"steps": store.n_steps, "batch": BATCH, "load_s": load_s, "rows": rows}


# ===================================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (seconds): 2x200 steps, 50k-step store")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for store.json / store.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    episodes, steps, lowdim_steps = (2, 200, 50_000) if args.quick else (10, 500, 1_000_000)
    tmp = RESULTS_DIR / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)

    writer = bench_writer(tmp / "writer.zarr", episodes, steps, flush_steps=64)
    shutil.rmtree(tmp / "writer.zarr")
    layout = bench_commit_layout(tmp / "layout.zarr", repeats=30 if args.quick else 200)
    shutil.rmtree(tmp / "layout.zarr")
    store = lowdim_store(tmp / f"lowdim_{lowdim_steps}.zarr", lowdim_steps)
    sampling = bench_sampling(store, disk_batches=5 if args.quick else 20, memory_batches=200 if args.quick else 2000)

    w = writer
    writer_rows = [{"steps": f"{w['episodes']} x {w['steps_per_episode']}", "steps/s": w["steps_per_s"],
                    "steps per CPU-second": w["steps_per_cpu_s"],
                    "raw MB/s": w["raw_MB_per_s"], "raw MB": w["raw_MB"], "disk MB": w["disk_MB"],
                    "ratio": w["compression_ratio"], "flush ms (median)": w["flush_ms"]["median"],
                    "commit ms (median)": w["commit_ms"]["median"],
                    "steps/s without avoidable metadata work": w["steps_per_s_without_avoidable"]}]
    sections = [
        ("Writer: joint states + two 128x128 cameras, flush every 64 steps",
         markdown_table(writer_rows, list(writer_rows[0]))),
        ("Where a flush and a commit spend their time (per call)",
         markdown_table(w["profile"], ["phase", "zarr call", "calls per phase", "ms per phase", "avoidable ms"])
         + f"\n\nAvoidable metadata work: {w['avoidable_ms_per_flush']:.1f} ms per flush, "
           f"{w['avoidable_ms_per_commit']:.1f} ms per commit."),
        ("Commit layout: one meta value per commit at two chunk lengths; statistics attributes (side by side)",
         markdown_table(layout, ["operation", "ms (median)", "ms (p90)"])),
        (f"Training samples, batch {BATCH}, {sampling['steps']}-step low-dim store (obs 17, action 6)",
         markdown_table(sampling["rows"], ["source", "batches timed", "ms per batch", "batches/s", "transitions/s",
                                           "speed-up vs disk"])
         + f"\n\nTransitionData.from_store load time: {sampling['load_s']:.2f} s."),
    ]
    name = "store_quick" if args.quick else "store"
    results = {"writer": writer, "commit_layout": layout, "sampling": sampling}
    json_path, md_path = write_results(name, results, sections, args.out)
    print(md_path.read_text())
    print(f"written: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
