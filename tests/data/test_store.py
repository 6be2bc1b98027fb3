"""The episode store: round trip, commit protocol, crash recovery, reward sources, statistics, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.verify import verify
from robot_learning.spec import SpecError
from tests.helpers import toy_episode, toy_spec, write_toy_store


def test_round_trip_is_bit_identical(tmp_path):
    lengths = (5, 7, 4)
    write_toy_store(tmp_path / "s.zarr", lengths=lengths).close()
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 3 and store.n_steps == 16
    assert store.episode_ends.tolist() == [5, 12, 16]
    for e, n in enumerate(lengths):
        obs, actions, rewards = toy_episode(e, n)
        ep = store.episode(e)
        assert np.array_equal(ep.obs["state"], np.stack([o["state"] for o in obs]))
        assert np.array_equal(ep.obs["cam"], np.stack([o["cam"] for o in obs]))
        assert np.array_equal(ep.action, actions)
        assert np.array_equal(ep.reward["env"], rewards)
        assert ep.meta["seed"] == e and ep.meta["task"] == store.spec.text
        assert np.allclose(ep.timestamp, np.arange(n) / store.spec.control_hz)
    assert store.episode_meta()["success"].tolist() == [True, False, True]
    assert store.read("terminal").nonzero()[0].tolist() == [4, 15]
    assert store.info["total_steps"] == 16 and store.info["features"]["obs/cam"]["shape"] == [16, 16, 3]


def test_discard_and_append_after_reopen(tmp_path):
    write_toy_store(tmp_path / "s.zarr", lengths=(5,), terminal_last=(True,)).close()
    store = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    obs, actions, _ = toy_episode(9, 10)
    with store.writer(flush_steps=4) as w:
        w.begin()
        for t in range(10):
            w.add_step(obs[t], actions[t], reward=1.0)
        w.discard()  # 8 of the 10 steps were already flushed to disk
        assert store.pending_leftover() == {}
        w.begin()
        for t in range(3):
            w.add_step(obs[t], actions[t], reward=2.0)
        assert w.end(success=False) == 1
    assert store.episode_lengths.tolist() == [5, 3]
    assert np.array_equal(store.episode(1).action, actions[:3])


def _interrupt_ends_write(store, monkeypatch):
    """Ctrl-C after the meta rows, before the commit point (the episode_ends write)."""
    real = type(store._ends_array).resize

    def interrupted(array, shape):
        if array.path.endswith("episode_ends"):
            raise KeyboardInterrupt
        return real(array, shape)

    monkeypatch.setattr(type(store._ends_array), "resize", interrupted)


def _interrupt_stats_merge(store, monkeypatch):
    """Ctrl-C past the commit point, while the statistics and info are brought up to date."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_merge_stats", interrupted)


@pytest.mark.parametrize("interrupt, lengths", [(_interrupt_ends_write, [5]), (_interrupt_stats_merge, [5, 6])],
                         ids=["before_commit_point", "after_commit_point"])
def test_a_commit_cut_short_by_ctrl_c_leaves_a_consistent_store_on_close(tmp_path, monkeypatch, interrupt, lengths):
    write_toy_store(tmp_path / "s.zarr", lengths=(5,), terminal_last=(True,)).close()
    store = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    obs, actions, _ = toy_episode(9, 6)
    w = store.writer(flush_steps=2)
    w.begin()
    for t in range(6):
        w.add_step(obs[t], actions[t], reward=1.0)
    interrupt(store, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        w.end(success=True)
    monkeypatch.undo()
    w.close()                                       # what the recorder does on its way out
    assert store.pending_leftover() == {} and store.episode_lengths.tolist() == lengths
    store.close()
    assert verify(tmp_path / "s.zarr").ok           # statistics and info agree with the committed episodes
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_lengths.tolist() == lengths


def test_stats_match_numpy_and_survive_reopen(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr", lengths=(30, 40, 50), terminal_last=(False,) * 3)
    state = store.read("obs/state").astype(np.float64)
    s = store.stats["obs/state"]
    assert s["count"] == 120
    assert np.allclose(s["mean"], state.mean(0)) and np.allclose(s["std"], state.std(0))
    assert np.allclose(s["min"], state.min(0)) and np.allclose(s["max"], state.max(0))
    # fewer rows than the reservoir: quantiles are exact
    assert np.allclose(s["q50"], np.quantile(state, 0.5, axis=0), atol=1e-6)
    before = store.stats
    store.close()
    again = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    assert again.recovery.clean and again.stats == before
    again.refresh_stats()
    assert np.allclose(again.stats["obs/state"]["mean"], before["obs/state"]["mean"])


def test_reward_sources_side_by_side_with_provenance(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr")
    labels = np.linspace(0, 1, store.n_steps, dtype=np.float32)
    store.add_reward("vlm_pref_abc123", labels, {"labeler": "oracle", "queries": 40})
    assert store.reward_sources == ["env", "vlm_pref_abc123"]
    assert store.reward_provenance("vlm_pref_abc123")["queries"] == 40
    assert np.array_equal(store.reward("vlm_pref_abc123"), labels)
    assert "reward/vlm_pref_abc123" in store.stats
    with pytest.raises(StoreError, match="already"):
        store.add_reward("vlm_pref_abc123", labels, {})
    with pytest.raises(SpecError, match=r"expected shape \(16,\)"):
        store.add_reward("short", labels[:-1], {})
    # an episode appended later has no label for the new source: NaN, reported by the loader
    obs, actions, _ = toy_episode(5, 3)
    with store.writer() as w:
        w.begin()
        for t in range(3):
            w.add_step(obs[t], actions[t], reward=0.5)
        w.end(success=True)
    assert np.isnan(store.reward("vlm_pref_abc123")[-3:]).all()
    assert np.array_equal(store.reward("vlm_pref_abc123")[:16], labels)


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    from tests.helpers import toy_spec, toy_episode
    from robot_learning.data.store import EpisodeStore
    store = EpisodeStore.open_or_create(sys.argv[1], toy_spec())
    w = store.writer(flush_steps=3)
    e = store.n_episodes
    while True:
        obs, actions, rewards = toy_episode(e, 25)
        w.begin(seed=e)
        for t in range(25):
            w.add_step(obs[t], actions[t], reward=float(rewards[t]))
        w.end(success=e % 2 == 0)
        print(e, flush=True)
        e += 1
""")


@pytest.mark.parametrize("kill_after", [0.9, 1.7, 2.6])
def test_sigkill_mid_episode_loses_nothing_committed(tmp_path, kill_after):
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[2])
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=root))
    path = tmp_path / "k.zarr"
    for round_ in range(2):  # kill, reopen and append, kill again
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        committed = []
        deadline = time.time() + kill_after + 30
        while len(committed) < 2 + round_ and time.time() < deadline:  # wait until episodes are committed
            committed.append(proc.stdout.readline())
        time.sleep(kill_after % 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = EpisodeStore.open(path, mode="a")
        assert store.n_episodes >= 2 + round_
        assert store.pending_leftover() == {}
        for e in range(store.n_episodes):
            obs, actions, rewards = toy_episode(e, 25)
            ep = store.episode(e)
            assert np.array_equal(ep.obs["state"], np.stack([o["state"] for o in obs])), f"episode {e} changed"
            assert np.array_equal(ep.obs["cam"], np.stack([o["cam"] for o in obs]))
            assert np.array_equal(ep.action, actions) and np.array_equal(ep.reward["env"], rewards)
            assert ep.meta["seed"] == e and ep.meta["success"] == (e % 2 == 0)
        assert store.stats["action"]["count"] == store.n_steps
        store.close()


def test_leftover_is_recovered_on_append_and_ignored_read_only(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr")
    obs, actions, _ = toy_episode(7, 6)
    w = store.writer(flush_steps=2)
    w.begin()
    for t in range(6):
        w.add_step(obs[t], actions[t], reward=1.0)
    # abandon without end(): as if the process died after flushing 6 steps
    store.close()
    ro = EpisodeStore.open(tmp_path / "s.zarr")
    assert ro.n_steps == 16 and ro.pending_leftover()["data/action"] == 22
    assert len(ro.read("action")) == 16
    rw = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    assert rw.recovery.truncated["data/action"] == (22, 16)
    assert "recovered crash leftovers" in str(rw.recovery)
    assert rw.pending_leftover() == {}


def test_single_writer_lock(tmp_path):
    store = write_toy_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="another writer|no other writer"):
        EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    store.close()
    EpisodeStore.open(tmp_path / "s.zarr", mode="a").close()


def test_bad_steps_are_rejected_with_clear_errors(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", toy_spec())
    w = store.writer()
    w.begin()
    good = {"state": np.zeros(3, np.float32), "cam": np.zeros((16, 16, 3), np.uint8)}
    with pytest.raises(SpecError, match=r"'state': expected shape \(3,\), found shape \(4,\)"):
        w.add_step({**good, "state": np.zeros(4)}, np.zeros(2))
    with pytest.raises(SpecError, match="'state': expected finite values, found 1 NaN"):
        w.add_step({**good, "state": np.array([0, np.nan, 0])}, np.zeros(2))
    with pytest.raises(SpecError, match=r"'cam': expected an array of shape \(16, 16, 3\), found nothing"):
        w.add_step({"state": good["state"]}, np.zeros(2))
    with pytest.raises(SpecError, match="'cam': expected dtype uint8"):
        w.add_step({**good, "cam": np.zeros((16, 16, 3), np.float32)}, np.zeros(2))
    with pytest.raises(SpecError, match=r"'action': expected shape \(2,\)"):
        w.add_step(good, np.zeros(3))
    with pytest.raises(SpecError, match="'reward/env': expected a finite number"):
        w.add_step(good, np.zeros(2), reward=float("inf"))
    w.add_step(good, np.zeros(2), reward=0.0)
    with pytest.raises(SpecError, match="same fields"):
        w.add_step(good, np.zeros(2))  # first step had a reward, this one has none
    assert w.end(success=True) == 0 and store.n_steps == 1


def test_opening_bad_paths(tmp_path):
    with pytest.raises(StoreError, match="expected an episode store"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["format"] = "something.else"
    with pytest.raises(StoreError, match="attribute 'format': expected 'robot_learning.episodes', found 'something.else'"):
        EpisodeStore.open(tmp_path / "other.zarr")
    write_toy_store(tmp_path / "s.zarr").close()
    with pytest.raises(StoreError, match="cannot create a store here"):
        EpisodeStore.create(tmp_path / "s.zarr", toy_spec())
    # a truncated store: a committed array lost rows
    arr = zarr.open_array(str(tmp_path / "s.zarr" / "data" / "action"), mode="r+")
    arr.resize((10, 2))
    with pytest.raises(StoreError, match="'data/action': expected at least 16 committed rows, found 10"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_append_refuses_another_task(tmp_path):
    write_toy_store(tmp_path / "s.zarr").close()
    other = toy_spec(action={"dim": 3, "low": -1.0, "high": 1.0})
    with pytest.raises(StoreError, match="action dim: expected 2, found 3"):
        EpisodeStore.open_or_create(tmp_path / "s.zarr", other)
