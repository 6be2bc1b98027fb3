"""`dataset verify`: passes a clean store, finds every kind of damage, never modifies the store."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.verify import verify
from tests.data.builders import task, write_store
from tests.helpers import toy_episode, write_toy_store


def snapshot(path):
    """(relative file, size, mtime) of every file of a store: equal snapshots mean nothing was written."""
    return sorted((os.path.relpath(os.path.join(r, f), path), os.stat(os.path.join(r, f)).st_size,
                   os.stat(os.path.join(r, f)).st_mtime_ns) for r, _, fs in os.walk(path) for f in fs)


def test_clean_store_passes_and_is_untouched(tmp_path):
    write_toy_store(tmp_path / "s.zarr").close()
    before = snapshot(tmp_path / "s.zarr")
    report = verify(tmp_path / "s.zarr")
    assert report.ok, report.problems
    assert (report.episodes, report.steps) == (3, 16)
    assert any("reward/env: every step labelled" in n for n in report.notes)
    assert snapshot(tmp_path / "s.zarr") == before


def test_nan_observation_is_found_with_its_episode(tmp_path):
    obs = np.zeros((4, 2), np.float32)
    bad = obs.copy()
    bad[2, 1] = np.nan
    episodes = [{"obs": {"position": o}, "action": np.zeros((4, 2)), "reward": np.zeros(4)} for o in (obs, bad, obs)]
    write_store(tmp_path / "s.zarr", task({"position": 2}), episodes, validate=False).close()
    report = verify(tmp_path / "s.zarr")
    assert not report.ok
    [problem] = report.problems
    assert "data/obs/position" in problem and "NaN/inf in 1 step(s)" in problem and "row 6" in problem
    assert "episodes [1]" in problem


def test_wrong_shape_against_the_task_spec(tmp_path):
    write_toy_store(tmp_path / "s.zarr").close()
    root = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    spec = dict(root.attrs["task_spec"])
    spec["observations"] = {**spec["observations"], "state": {**spec["observations"]["state"], "shape": [4]}}
    root.attrs["task_spec"] = spec
    report = verify(tmp_path / "s.zarr")
    assert any("data/obs/state: expected per-step shape (4,) and dtype float32" in p and "found shape (3,)" in p
               for p in report.problems), report.problems


def test_dangling_rows_of_an_abandoned_writer(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr", lengths=(5,), terminal_last=(True,))
    writer = store.writer(flush_steps=4)
    obs, actions, _ = toy_episode(7, 10)
    writer.begin()
    for t in range(10):
        writer.add_step(obs[t], actions[t], reward=0.0)
    store.close()  # the writer is abandoned: 8 flushed rows stay past the last end
    before = snapshot(tmp_path / "s.zarr")
    report = verify(tmp_path / "s.zarr")
    assert any(p.startswith("data/action: expected 5 rows") and "found 13: 8 uncommitted" in p for p in report.problems)
    assert snapshot(tmp_path / "s.zarr") == before
    assert EpisodeStore.open(tmp_path / "s.zarr").pending_leftover()["data/action"] == 13


def test_truncated_store_lists_every_short_array(tmp_path):
    write_toy_store(tmp_path / "s.zarr").close()
    for name in ("action", "obs/state"):
        a = zarr.open_array(tmp_path / "s.zarr" / "data" / name, mode="r+")
        a.resize((10, *a.shape[1:]))
    with pytest.raises(StoreError, match=r"'data/action': expected at least 16 committed rows, found 10"):
        EpisodeStore.open(tmp_path / "s.zarr")
    report = verify(tmp_path / "s.zarr")
    short = [p for p in report.problems if "truncated store" in p]
    assert len(short) == 2 and any("'data/obs/state'" in p for p in short)


def test_rewards_terminals_and_timestamps(tmp_path):
    n = 4
    eps = [{"obs": {"position": np.zeros((n, 2), np.float32)}, "action": np.zeros((n, 2)),
            "reward": {"env": np.zeros(n), "vlm": np.array([1, np.nan, 1, 1])}} for _ in range(2)]
    eps[1]["reward"]["env"] = np.array([0, np.inf, 0, 0])
    eps[1]["terminal"] = np.array([0, 1, 0, 0], bool)
    write_store(tmp_path / "s.zarr", task({"position": 2}), eps, validate=False).close()
    report = verify(tmp_path / "s.zarr")
    assert any("data/reward/env: expected finite values, found inf in 1 step(s)" in p for p in report.problems)
    assert any("data/terminal: expected true terminals only on an episode's last step" in p and "[1]" in p
               for p in report.problems)
    assert not any("reward/vlm" in p for p in report.problems)
    assert any("data/reward/vlm: 75.0% of steps labelled; 2 unlabelled (NaN) step(s) in episodes [0, 1]" in n
               for n in report.notes)


def test_not_a_store(tmp_path):
    report = verify(tmp_path)
    expected = (f"{tmp_path}: expected an episode store (a Zarr v3 group with format 'robot_learning.episodes'), "
                "found no zarr.json in it")
    assert report.problems == [expected]


def test_non_monotone_episode_ends(tmp_path):
    write_toy_store(tmp_path / "s.zarr").close()
    ends = zarr.open_array(tmp_path / "s.zarr" / "meta" / "episode_ends", mode="r+")
    ends[1] = 3  # [5, 12, 16] -> [5, 3, 16]
    report = verify(tmp_path / "s.zarr")
    assert any("'meta/episode_ends': expected strictly increasing positive ends, found [5, 3, 16] at episode 1" in p
               for p in report.problems), report.problems
