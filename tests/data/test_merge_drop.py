"""`dataset merge` and `dataset drop-episodes`: data copied bit for bit, meta preserved, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.drop import drop_episodes
from robot_learning.data.tools.merge import merge
from tests.data.builders import task, write_store
from tests.helpers import toy_spec, write_toy_store


def assert_same_episode(a, b):
    """Every per-step array and every meta field of two episodes are identical (dtype and bits)."""
    for key in a.obs:
        assert a.obs[key].dtype == b.obs[key].dtype and np.array_equal(a.obs[key], b.obs[key])
    for name in ("action", "terminal", "timestamp"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    for source, values in a.reward.items():
        assert values.tobytes() == b.reward[source].tobytes()  # NaN (unlabelled) included
    for name, values in a.extras.items():
        assert values.dtype == b.extras[name].dtype and np.array_equal(values, b.extras[name])
    assert {k: v for k, v in b.meta.items() if k != "source_store"} == a.meta


@pytest.fixture
def two_stores(tmp_path):
    a = write_toy_store(tmp_path / "a.zarr", lengths=(5, 7, 4))
    labels = np.linspace(0, 1, a.n_steps, dtype=np.float32)
    labels[5:12] = np.nan  # episode 1 unlabelled
    a.add_reward("vlm", labels, {"labeler": "oracle"})
    a.add_reward("clf", labels * 2, {"model": "x"})
    a.close()
    b = write_toy_store(tmp_path / "b.zarr", lengths=(3, 6), terminal_last=(False, True))
    b.add_reward("vlm", np.ones(b.n_steps, np.float32), {"labeler": "oracle"})
    b.close()
    return EpisodeStore.open(tmp_path / "a.zarr"), EpisodeStore.open(tmp_path / "b.zarr")


def test_merge_is_bit_for_bit(two_stores, tmp_path):
    a, b = two_stores
    out = EpisodeStore.open(merge([a.path, b.path], tmp_path / "m.zarr"))
    assert out.episode_lengths.tolist() == [5, 7, 4, 3, 6]
    assert out.reward_sources == ["env", "vlm"]  # 'clf' is only in a
    assert out.reward_provenance("vlm")["labeler"] == "oracle"
    order = [(a, i) for i in range(3)] + [(b, i) for i in range(2)]
    for k, (src, i) in enumerate(order):
        merged, original = out.episode(k), src.episode(i)
        original.reward.pop("clf", None)
        assert_same_episode(original, merged)
        assert merged.meta["source_store"] == str(src.path)


def test_merge_keeps_extras_and_an_earlier_source_store(tmp_path):
    spec = task({"position": 2})
    paths = []
    for k in range(2):
        n = 3 + k
        ep = {"obs": {"position": np.full((n, 2), k, np.float32)}, "action": np.zeros((n, 2)), "reward": np.ones(n),
              "extras": {"stamp": np.arange(n) + 1e9 + 1e-3, "seq": np.arange(n, dtype=np.int32)},
              "meta": {"operator": f"op{k}"}}
        write_store(tmp_path / f"s{k}.zarr", spec, [ep]).close()
        paths.append(tmp_path / f"s{k}.zarr")
    first = EpisodeStore.open(merge(paths, tmp_path / "m1.zarr"))
    assert first.extra_keys == ["seq", "stamp"]
    for k, p in enumerate(paths):
        assert_same_episode(EpisodeStore.open(p).episode(0), first.episode(k))
    again = EpisodeStore.open(merge([first.path, paths[1]], tmp_path / "m2.zarr"))
    assert again.episode_meta()["source_store"].tolist() == [str(paths[0]), str(paths[1]), str(paths[1])]
    assert again.episode_meta()["operator"].tolist() == ["op0", "op1", "op1"]


def test_merge_refuses_other_tasks_and_bad_outputs(two_stores, tmp_path):
    a, _ = two_stores
    other = write_toy_store(tmp_path / "o.zarr", spec=toy_spec(control_hz=20), lengths=(2,), terminal_last=(False,))
    other.close()
    with pytest.raises(StoreError, match=r"o.zarr: cannot merge a store of task 'toy' .*control rate: expected 10"):
        merge([a.path, other.path], tmp_path / "m.zarr")
    with pytest.raises(StoreError, match=r"output store: expected a new path .* found the input"):
        merge([a.path, other.path], a.path, overwrite=True)
    with pytest.raises(StoreError, match=r"expected at least two stores, found 1"):
        merge([a.path], tmp_path / "m.zarr")
    with pytest.raises(StoreError, match=r"nope.zarr: expected an episode store .* found no such path"):
        merge([a.path, tmp_path / "nope.zarr"], tmp_path / "m.zarr")
    assert not (tmp_path / "m.zarr").exists()


def test_drop_episodes_is_bit_for_bit(two_stores, tmp_path):
    a, _ = two_stores
    out = EpisodeStore.open(drop_episodes(a.path, [1], tmp_path / "d.zarr"))
    assert out.episode_lengths.tolist() == [5, 4]
    assert out.reward_sources == a.reward_sources
    assert out.reward_provenance("clf")["model"] == "x"
    for k, i in enumerate([0, 2]):
        assert_same_episode(a.episode(i), out.episode(k))
    assert "source_store" not in out.episode_meta()


def test_drop_episodes_bad_input(two_stores, tmp_path):
    a, _ = two_stores
    with pytest.raises(StoreError, match=r"episodes to drop: expected indices in \[0, 3\), found \[3\]"):
        drop_episodes(a.path, [0, 3], tmp_path / "d.zarr")
    with pytest.raises(StoreError, match=r"expected at least one episode left, found all 3 dropped"):
        drop_episodes(a.path, [0, 1, 2], tmp_path / "d.zarr")
    with pytest.raises(StoreError, match=r"expected a new path \(stores are never edited in place\)"):
        drop_episodes(a.path, [0], a.path, overwrite=True)
    assert EpisodeStore.open(a.path).n_episodes == 3
