"""Dataset generation: deterministic stores with the right episodes, reward sources and metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sim
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import SpecError
from robot_learning.cli import main


def _contents(store: EpisodeStore) -> dict[str, np.ndarray]:
    out = {f"data/{name}": np.asarray(a[:]) for name, a in store.data_arrays().items()}
    out.update({f"meta/{name}": np.asarray(a[:]) for name, a in store.meta_arrays().items()})
    out["meta/episode_ends"] = store.episode_ends
    return out


def test_generate_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    a = sim.generate_dataset("arm_reach", "mixed", 3, seed=3, out=tmp_path / "a.zarr", progress_bar=False)
    b = sim.generate_dataset("arm_reach", "mixed", 3, seed=3, out=tmp_path / "b.zarr", progress_bar=False)
    ca, cb = _contents(a), _contents(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        assert np.array_equal(ca[key], cb[key]), key
    store = EpisodeStore.open(tmp_path / "a.zarr")
    assert store.n_episodes == 3
    assert store.reward_sources == ["dense", "sparse"]
    meta = store.episode_meta()
    assert {"seed", "tier", "policy", "success"} <= set(meta)
    assert set(meta["tier"]) == {"mixed"}
    ep = store.episode(0)
    assert ep.obs["front"].shape[1:] == (64, 64, 3) and ep.obs["front"].dtype == np.uint8
    for i in range(store.n_episodes):
        ep = store.episode(i)
        # terminal only on the success step; sparse reward 1 exactly there
        assert ep.terminal.sum() == int(ep.meta["success"]) and (not ep.terminal.any() or ep.terminal[-1])
        assert ep.reward["sparse"].sum() == int(ep.meta["success"])
    other = sim.generate_dataset("point_maze_umaze", "noisy", 2, seed=3, out=tmp_path / "c.zarr", progress_bar=False)
    again = sim.generate_dataset("point_maze_umaze", "noisy", 2, seed=4, out=tmp_path / "d.zarr", progress_bar=False)
    assert not np.array_equal(other.read("obs/position")[:10], again.read("obs/position")[:10])


def test_time_limits_are_not_terminal(tmp_path: Path) -> None:
    store = sim.generate_dataset("point_maze_umaze", "random", 2, seed=0, out=tmp_path / "m.zarr", progress_bar=False)
    assert store.n_steps == 2 * 120 and not store.read("terminal").any()


def test_locomotion_store_has_env_reward_and_falls_are_terminal(tmp_path: Path) -> None:
    store = sim.generate_dataset("hopper", "random", 2, seed=0, out=tmp_path / "h.zarr", progress_bar=False,
                                 dynamics="heavy")
    assert store.reward_sources == ["env"]
    assert store.read("terminal").sum() == 2  # a random hopper falls well before 1000 steps
    assert set(store.episode_meta()["dynamics"]) == {"mass_scale=2"}


def test_cli_run_and_errors(tmp_path: Path) -> None:
    args = ["dataset", "generate", "task=point_maze_umaze", "tier=expert", "episodes=1", "seed=0",
            f"out={tmp_path / 'cli.zarr'}"]
    assert main(args) == 0
    assert EpisodeStore.open(tmp_path / "cli.zarr").n_episodes == 1
    assert main(args) == 1  # the store exists: refused without overwrite=true
    assert main([*args, "overwrite=true"]) == 0
    with pytest.raises(SpecError, match="no_such_task"):
        sim.generate_dataset("no_such_task", "expert", 1, 0, tmp_path / "x.zarr")
    with pytest.raises(SpecError, match="field 'tier'"):
        sim.generate_dataset("arm_reach", "legendary", 1, 0, tmp_path / "x.zarr")
    with pytest.raises(SpecError, match="friction"):
        sim.generate_dataset("arm_reach", "expert", 1, 0, tmp_path / "x.zarr", dynamics={"friction": 0.5})
    assert not (tmp_path / "x.zarr").exists()
