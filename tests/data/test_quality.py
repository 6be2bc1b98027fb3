"""TQ and SACo (Schweighofer et al. 2022) against hand-computed values, and `dataset info` numbers."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.data.quality import (
    Grid,
    episode_returns,
    measure,
    state_action_coverage,
    trajectory_quality,
    unique_rows,
)
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.info import summarize
from tests.data.builders import task, write_store

REFS = {"random": 0.0, "expert": 10.0}


def col(*values):
    return np.asarray(values, dtype=np.float32).reshape(-1, 1)


# Three episodes of a 1-D task (position, action):
#   ep0: pos 0, .5, 1   act 0, 0, 1     rewards 1, 2, 3  -> return 6, success, ends in a terminal
#   ep1: pos 0, .25     act 0, 0        rewards 1, 1     -> return 2
#   ep2: pos 1 (x4)     act 1 (x4)      rewards 0,0,0,4  -> return 4, success
EPISODES = [
    {"obs": {"position": col(0, 0.5, 1)}, "action": col(0, 0, 1), "reward": np.array([1, 2, 3.0]),
     "terminal": np.array([0, 0, 1], bool), "success": True},
    {"obs": {"position": col(0, 0.25)}, "action": col(0, 0), "reward": np.array([1, 1.0]), "success": False},
    {"obs": {"position": col(1, 1, 1, 1)}, "action": col(1, 1, 1, 1), "reward": np.array([0, 0, 0, 4.0]),
     "success": True},
]
# Reference: one episode sweeping position 0..2 and action -1..1 (5 distinct cells on its own grid), return 10.
REFERENCE = [{"obs": {"position": col(0, 0.5, 1, 1.5, 2)}, "action": col(-1, -0.5, 0, 0.5, 1),
              "reward": np.array([2, 2, 2, 2, 2.0])}]


@pytest.fixture
def stores(tmp_path):
    spec = task({"position": 1}, action_dim=1, reference_returns=REFS)
    write_store(tmp_path / "d.zarr", spec, EPISODES).close()
    write_store(tmp_path / "ref.zarr", spec, REFERENCE).close()
    return EpisodeStore.open(tmp_path / "d.zarr"), EpisodeStore.open(tmp_path / "ref.zarr")


def test_episode_returns_and_unlabelled_steps():
    r = np.array([1, 2, 3, 1, 1, 0, 0, 0, 4], np.float32)
    assert episode_returns(r, np.array([3, 5, 9])).tolist() == [6, 2, 4]
    r[3] = np.nan
    out = episode_returns(r, np.array([3, 5, 9]))
    assert out[0] == 6 and np.isnan(out[1]) and out[2] == 4
    assert episode_returns(r, np.zeros(0, np.int64)).shape == (0,)


def test_trajectory_quality_maps_references_to_zero_and_one():
    assert trajectory_quality(np.array([6, 2, 4]), 0, 10) == pytest.approx(0.4)
    assert trajectory_quality(np.array([0.0]), 0, 10) == 0 and trajectory_quality(np.array([10.0]), 0, 10) == 1
    with pytest.raises(ValueError, match="distinct"):
        trajectory_quality(np.array([1.0]), 3, 3)


def test_grid_matches_numpy_digitize_of_the_official_code():
    x = np.array([[0.0, -1], [0.25, 0], [0.5, 1], [1.0, 2]])
    grid = Grid.spanning(x, 5)
    # per axis: np.digitize(x, np.linspace(min, max, 5)), as in ml-jku/OfflineRL Evaluator.get_unique_states
    expected = np.stack([np.digitize(x[:, a], np.linspace(x[:, a].min(), x[:, a].max(), 5)) for a in range(2)], 1)
    assert np.array_equal(grid.codes(x), expected)
    assert grid.codes(x)[:, 0].tolist() == [1, 2, 3, 5]
    assert unique_rows(np.array([[1, 1], [1, 1], [2, 1]])) == 2


def test_saco_by_hand():
    pairs = np.concatenate([np.concatenate([e["obs"]["position"], e["action"]], 1) for e in EPISODES])
    ref = np.concatenate([REFERENCE[0]["obs"]["position"], REFERENCE[0]["action"]], 1)
    # own grid (pos 0..1, act 0..1): cells (1,1) (3,1) (5,5) (1,1) (2,1) (5,5)x4 -> 4 unique of 9 steps
    own = state_action_coverage(pairs, grid_points=5)
    assert (own.unique, own.denominator, own.saco) == (4, 9, pytest.approx(4 / 9))
    assert "no reference" in own.normaliser
    # reference grid (pos 0..2, act -1..1): (1,3) (2,3) (3,5) (1,3) (1,3) (3,5)x4 -> 3 unique; reference has 5
    shared = state_action_coverage(pairs, ref, grid_points=5)
    assert (shared.unique, shared.denominator, shared.saco) == (3, 5, pytest.approx(0.6))
    assert "reference" in shared.normaliser


def test_measure_store_with_and_without_reference(stores):
    data, ref = stores
    q = measure(data, grid_points=5)
    assert q.mean_return == pytest.approx(4) and q.tq == pytest.approx(0.4) and "reference_returns" in q.tq_normaliser
    assert q.coverage.saco == pytest.approx(4 / 9)
    assert measure(data, reference=ref, grid_points=5).coverage.saco == pytest.approx(0.6)


def test_tq_without_reference_returns_uses_observed_extremes(tmp_path):
    spec = task({"position": 1}, action_dim=1)
    data = write_store(tmp_path / "d.zarr", spec, EPISODES)
    ref = write_store(tmp_path / "ref.zarr", spec, REFERENCE)
    q = measure(data)
    assert q.tq == pytest.approx((4 - 2) / (6 - 2)) and "lowest (2) and highest (6)" in q.tq_normaliser
    assert measure(data, reference=ref).tq == pytest.approx((4 - 2) / (10 - 2))


def test_reference_of_another_task_is_refused(stores, tmp_path):
    data, _ = stores
    episode = {"obs": {"position": np.zeros((2, 2), np.float32)}, "action": col(0, 0), "reward": np.zeros(2)}
    other = write_store(tmp_path / "o.zarr", task({"position": 2}, action_dim=1), [episode])
    with pytest.raises(StoreError, match=r"o.zarr: reference store.*observation 'position'"):
        measure(data, reference=other)


def test_info_numbers(stores, tmp_path):
    data, ref = stores
    data.close()
    appendable = EpisodeStore.open(data.path, mode="a")
    vlm = np.array([1, 1, 1, np.nan, np.nan, 1, 1, 1, 1], np.float32)  # episode 1 unlabelled
    appendable.add_reward("vlm_pref_x", vlm, {"labeler": "oracle"})
    appendable.close()
    s = summarize(EpisodeStore.open(data.path), reference=ref, grid_points=5)
    assert (s["episodes"], s["steps"]) == (3, 9)
    assert s["lengths"]["mean"] == 3 and (s["lengths"]["min"], s["lengths"]["max"]) == (2, 4)
    assert s["success_rate"] == pytest.approx(2 / 3)
    env = s["rewards"]["env"]
    assert env["coverage"] == 1 and env["returns"]["mean"] == pytest.approx(4) and env["returns"]["max"] == 6
    v = s["rewards"]["vlm_pref_x"]
    assert v["coverage"] == pytest.approx(7 / 9) and v["labelled_episodes"] == 2
    assert v["returns"]["mean"] == pytest.approx(3.5) and v["provenance"]["labeler"] == "oracle"
    assert s["quality"]["tq"] == pytest.approx(0.4) and s["quality"]["saco"] == pytest.approx(0.6)
    assert s["stats"]["obs/position"]["max"] == [1.0]
    assert s["storage"]["total_bytes"] > 0 and "obs/position" in s["storage"]["arrays"]
