"""D4RL HDF5 and Minari directories -> store: values, episode boundaries, observation mapping, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.data.convert import ConvertOptions, convert, detect_format
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.spec import SpecError
from tests.data.builders import task, write_d4rl, write_minari

N = 10


def d4rl_arrays():
    """Four episodes: rows 0-2 end in a terminal, 3-5 in a timeout, 6-7 where next_observations[7] is not
    observations[8] (no flag), 8-9 at the end of the data."""
    obs = np.stack([np.arange(N), np.arange(N) + 0.5, -np.arange(N), np.ones(N)], 1).astype(np.float32)
    nxt = np.roll(obs, -1, axis=0)
    nxt[2] += 100  # after a terminal or a timeout the next observation is not the next row's: no extra split
    nxt[5] += 100
    nxt[7] += 1
    terminals = np.zeros(N, bool)
    terminals[2] = True
    timeouts = np.zeros(N, bool)
    timeouts[5] = True
    rng = np.random.default_rng(0)
    return {"observations": obs, "next_observations": nxt, "actions": rng.uniform(-1, 1, (N, 2)).astype(np.float32),
            "rewards": np.arange(N, dtype=np.float32) / 10, "terminals": terminals, "timeouts": timeouts}


SPLIT = {"position": "[0:2]", "velocity": "[2:4]"}


def test_d4rl_round_trip_and_boundaries(tmp_path):
    arrays = d4rl_arrays()
    src = write_d4rl(tmp_path / "hop.hdf5", **arrays)
    spec = task({"position": 2, "velocity": 2})
    out = convert(src, spec, tmp_path / "s.zarr", ConvertOptions(obs_map=SPLIT))
    store = EpisodeStore.open(out)
    assert store.episode_ends.tolist() == [3, 6, 8, 10]
    meta = store.episode_meta()
    assert meta["end_reason"].tolist() == ["terminal", "timeout", "next_obs_mismatch", "end_of_data"]
    assert meta["source_episode"].tolist() == [0, 1, 2, 3] and meta["source_row"].tolist() == [0, 3, 6, 8]
    assert set(meta["source"].tolist()) == {str(src)}
    assert meta["success"].tolist() == [True, False, False, False]  # success=terminal
    assert np.array_equal(store.read("obs/position"), arrays["observations"][:, :2])
    assert np.array_equal(store.read("obs/velocity"), arrays["observations"][:, 2:])
    assert np.array_equal(store.read("action"), arrays["actions"])
    assert np.array_equal(store.reward("env"), arrays["rewards"])
    assert store.read("terminal").nonzero()[0].tolist() == [2]  # the timeout is not a terminal
    prov = store.reward_provenance("env")
    assert prov["format"] == "d4rl" and prov["episodes_by_end_reason"]["timeout"] == 1


def test_d4rl_without_next_observations_splits_on_flags_only(tmp_path):
    arrays = d4rl_arrays()
    del arrays["next_observations"]
    src = write_d4rl(tmp_path / "hop.h5", **arrays)
    out = convert(src, task({"state": 4}), tmp_path / "s.zarr", ConvertOptions(success="reward"))
    store = EpisodeStore.open(out)
    assert store.episode_ends.tolist() == [3, 6, 10]
    assert np.array_equal(store.read("obs/state"), arrays["observations"])  # one key: the whole vector
    assert store.episode_meta()["success"].tolist() == [True, True, True]  # success=reward: any reward > 0


def test_d4rl_bad_inputs(tmp_path):
    spec = task({"state": 4})
    arrays = d4rl_arrays()
    missing = {k: v for k, v in arrays.items() if k != "timeouts"}
    with pytest.raises(SpecError, match=r"a.hdf5: key 'timeouts': expected a dataset .* found it missing"):
        convert(write_d4rl(tmp_path / "a.hdf5", **missing), spec, tmp_path / "a.zarr")
    short = {**arrays, "actions": arrays["actions"][:7]}
    with pytest.raises(SpecError, match=r"b.hdf5: key 'actions': expected 10 rows \(as many as .*\), found 7"):
        convert(write_d4rl(tmp_path / "b.hdf5", **short), spec, tmp_path / "b.zarr")
    with pytest.raises(SpecError, match=r"obs_map: expected a mapping that splits the source vector of shape \[4\]"):
        convert(write_d4rl(tmp_path / "c.hdf5", **arrays), task({"position": 2, "velocity": 2}), tmp_path / "c.zarr")
    with pytest.raises(SpecError, match=r"obs_map.state: expected 3 values per step .* found 4"):
        convert(tmp_path / "c.hdf5", task({"state": 3}), tmp_path / "c.zarr")
    nan = {**arrays, "observations": arrays["observations"].copy()}
    nan["observations"][4, 0] = np.nan
    with pytest.raises(SpecError, match=r"d.hdf5 rows 3-5 \(episode 1\): field 'state': expected finite values"):
        convert(write_d4rl(tmp_path / "d.hdf5", **nan), spec, tmp_path / "d.zarr")
    assert not (tmp_path / "d.zarr").exists() and not (tmp_path / "d.zarr.partial").exists()
    with pytest.raises(SpecError, match=r"task 'no_such_task': expected one of .* found no such file"):
        convert(tmp_path / "c.hdf5", "no_such_task", tmp_path / "e.zarr")


def minari_episode(rng, t, terminated, with_image=True):
    obs = {"observation": rng.normal(size=(t + 1, 4)).astype(np.float32),
           "desired_goal": rng.normal(size=(t + 1, 2)).astype(np.float32)}
    if with_image:
        obs["pixels"] = rng.integers(0, 255, (t + 1, 8, 8, 3), dtype=np.uint8)
    return {"observations": obs, "actions": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
            "rewards": rng.normal(size=t).astype(np.float32),
            "terminations": np.eye(t, dtype=bool)[-1] if terminated else np.zeros(t, bool),
            "truncations": np.zeros(t, bool) if terminated else np.eye(t, dtype=bool)[-1], "attrs": {"seed": 40}}


def test_minari_dict_observations_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    episodes = {i: minari_episode(rng, 2 + i % 3, terminated=i % 2 == 0) for i in range(11)}
    src = write_minari(tmp_path / "maze", episodes)
    spec = task({"position": 2, "velocity": 2, "goal": 2, "front": {"shape": [8, 8, 3], "kind": "rgb"}})
    obs_map = {"position": "observation[0:2]", "velocity": "observation[2:4]", "goal": "desired_goal",
               "front": "pixels"}
    assert detect_format(src) == "minari"
    store = EpisodeStore.open(convert(src, spec, tmp_path / "s.zarr", ConvertOptions(obs_map=obs_map)))
    meta = store.episode_meta()
    assert meta["source_episode"].tolist() == list(range(11))  # numeric order: episode_10 last
    assert set(meta["source"].tolist()) == {"dot/test-v0"} and set(meta["seed"].tolist()) == {40}
    assert meta["end_reason"].tolist() == ["terminal" if i % 2 == 0 else "timeout" for i in range(11)]
    for i, src_ep in episodes.items():
        t = len(src_ep["rewards"])
        ep = store.episode(i)
        o = src_ep["observations"]
        assert len(ep) == t  # T+1 observations, T steps: the final observation is not a step
        assert np.array_equal(ep.obs["position"], o["observation"][:t, :2])
        assert np.array_equal(ep.obs["velocity"], o["observation"][:t, 2:])
        assert np.array_equal(ep.obs["goal"], o["desired_goal"][:t])
        assert np.array_equal(ep.obs["front"], o["pixels"][:t])
        assert np.array_equal(ep.action, src_ep["actions"]) and np.array_equal(ep.reward["env"], src_ep["rewards"])
        assert ep.terminal.tolist() == src_ep["terminations"].tolist()
        assert ep.meta["success"] == (i % 2 == 0)


def test_minari_default_mapping_box_and_nested_fields(tmp_path):
    rng = np.random.default_rng(2)
    ep = minari_episode(rng, 3, terminated=True, with_image=False)
    src = write_minari(tmp_path / "a", {0: ep})
    spec = task({"observation": 4, "desired_goal": 2})  # same-named fields map without obs_map
    store = EpisodeStore.open(convert(src, spec, tmp_path / "a.zarr"))
    assert np.array_equal(store.read("obs/desired_goal"), ep["observations"]["desired_goal"][:3])
    box = {**ep, "observations": ep["observations"]["observation"]}
    store = EpisodeStore.open(convert(write_minari(tmp_path / "b", {0: box}), task({"state": 4}), tmp_path / "b.zarr"))
    assert np.array_equal(store.read("obs/state"), box["observations"][:3])
    nested = {**ep, "observations": {"robot": {"joints": ep["observations"]["observation"]}}}
    store = EpisodeStore.open(convert(write_minari(tmp_path / "c", {0: nested}), task({"q": 4}), tmp_path / "c.zarr",
                                      ConvertOptions(obs_map={"q": "robot/joints"})))
    assert np.array_equal(store.read("obs/q"), ep["observations"]["observation"][:3])


def test_minari_bad_inputs(tmp_path):
    rng = np.random.default_rng(3)
    ep = minari_episode(rng, 3, terminated=True, with_image=False)
    spec = task({"observation": 4, "desired_goal": 2})
    short = {**ep, "observations": {k: v[:3] for k, v in ep["observations"].items()}}
    src = write_minari(tmp_path / "a", {0: ep, 1: short})
    with pytest.raises(SpecError, match=r"episode_1: key 'observations/\w+': expected 4 rows \(one more than the 3 "
                                        r"steps\), found 3"):
        convert(src, spec, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    no_actions = {k: v for k, v in ep.items() if k != "actions"}
    with pytest.raises(SpecError, match=r"episode_0: key 'actions': expected it in every Minari episode, found it"):
        convert(write_minari(tmp_path / "b", {0: no_actions}), spec, tmp_path / "b.zarr")
    with pytest.raises(SpecError, match=r"obs_map.goal: expected a source field named 'goal' or an obs_map entry"):
        convert(write_minari(tmp_path / "c", {0: ep}), task({"observation": 4, "goal": 2}), tmp_path / "c.zarr")
    with pytest.raises(SpecError, match=r"obs_map.velocity: expected a source field among .* found 'observatio'"):
        convert(tmp_path / "c", task({"velocity": 4, "desired_goal": 2}), tmp_path / "c.zarr",
                ConvertOptions(obs_map={"velocity": "observatio", "desired_goal": "desired_goal"}))


def test_dispatch_and_output_checks(tmp_path):
    with pytest.raises(StoreError, match=r"nothing.hdf5: input: expected a D4RL .* found no such path"):
        detect_format(tmp_path / "nothing.hdf5")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match=r"found a file with suffix '.txt'"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(StoreError, match=r"found a directory without data/main_data.hdf5"):
        detect_format(tmp_path)
    (tmp_path / "rec.mcap").write_bytes(b"")
    assert detect_format(tmp_path / "rec.mcap") == "mcap"
    src = write_d4rl(tmp_path / "a.hdf5", **d4rl_arrays())
    convert(src, task({"state": 4}), tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=r"s.zarr: output store: expected no file or directory, found one"):
        convert(src, task({"state": 4}), tmp_path / "s.zarr")
    convert(src, task({"state": 4}), tmp_path / "s.zarr", ConvertOptions(overwrite=True))
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 4
