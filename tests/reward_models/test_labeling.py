"""Oracle labeler, pair sampling, the preference dataset and resumable labelling runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore, StoreError
from reward_models.frames import store_fingerprint
from reward_models.labelers import Labels, Pairs, build_labeler
from reward_models.labeling import Sampling, label_store
from reward_models.pairs import disagreement, sample_disagreement, sample_uniform, segment_starts
from reward_models.preferences import PreferenceDataset, default_root
from tests.reward_models.conftest import write_store


def test_oracle_follows_progress_and_flips_with_noise(reach_store, tmp_path):
    import sim

    store = EpisodeStore.open(reach_store)
    pairs = sample_uniform(store, 400, 1, np.random.default_rng(0))
    clean = build_labeler({"name": "oracle"}, store, tmp_path).label(pairs)
    obs = {k: store.read(f"obs/{k}") for k in store.spec.low_dim_keys}
    progress = sim.progress(store.spec, obs)
    expected = np.where(progress[pairs.second] > progress[pairs.first], 1, 0)
    assert np.array_equal(clean.choice, expected)
    noisy = build_labeler({"name": "oracle", "noise": 0.25, "seed": 1}, store, tmp_path)
    labels = noisy.label(pairs)
    assert 0.15 < np.mean(labels.choice != clean.choice) < 0.35
    assert np.allclose(labels.confidence, 0.75)
    chunked = np.concatenate([noisy.label(pairs[i:i + 7]).choice for i in range(0, len(pairs), 7)])
    assert np.array_equal(chunked, labels.choice)
    margin = build_labeler({"name": "oracle", "margin": 1e9}, store, tmp_path).label(pairs)
    assert np.all(margin.choice == -1)


def test_oracle_needs_a_simulated_task(image_store, tmp_path):
    with pytest.raises(ConfigError, match=r"labeler 'oracle': expected a store of a simulated task"):
        build_labeler({"name": "oracle"}, EpisodeStore.open(image_store), tmp_path)
    with pytest.raises(ConfigError, match=r"labeler.name: expected one of \['chat_vlm', 'clip', 'oracle'\]"):
        build_labeler({"name": "gpt"}, EpisodeStore.open(image_store), tmp_path)


def test_uniform_pairs_are_distinct_segments_inside_episodes(image_store):
    store = EpisodeStore.open(image_store)
    pairs = sample_uniform(store, 500, 3, np.random.default_rng(0))
    assert np.all(pairs.first != pairs.second)
    ep_end = np.repeat(store.episode_ends, store.episode_lengths)
    assert np.all(pairs.first + 3 <= ep_end[pairs.first]) and np.all(pairs.second + 3 <= ep_end[pairs.second])
    assert len(segment_starts(store, 3)) == store.n_episodes * (10 - 2)
    with pytest.raises(StoreError, match="segment length 11: expected episodes at least that long"):
        segment_starts(store, 11)


def test_disagreement_keeps_the_most_contested_pairs(image_store):
    store = EpisodeStore.open(image_store)
    rng = np.random.default_rng(0)
    members = np.zeros((3, store.n_steps))
    members[:, 50:60] = [[-3.0], [0.0], [3.0]]
    pairs = sample_disagreement(store, 20, 1, rng, members, candidates=10)
    touches = (pairs.first // 10 == 5) ^ (pairs.second // 10 == 5)
    assert touches.all()
    assert np.all(disagreement(members, pairs) > 0.3)
    with pytest.raises(StoreError, match="expected per-step rewards of at least two ensemble members"):
        sample_disagreement(store, 5, 1, rng, members[:1], candidates=2)


def test_preference_dataset_appends_survives_a_torn_line_and_checks_its_store(image_store, tmp_path):
    store = EpisodeStore.open(image_store)
    prefs = PreferenceDataset(store)
    assert prefs.root == default_root(image_store)
    prefs.start_run({"run_id": "r1", "store": store_fingerprint(store)})
    prefs.append("r1", np.array([0, 1]), Pairs(np.array([3, 4]), np.array([5, 6])),
                 Labels(np.array([0, -1], np.int8), np.array([0.9, 1.0], np.float32)))
    with open(prefs.labels_path, "ab") as f:
        f.write(b'{"run":"r1","query":2,"fir')
    data = prefs.load()
    assert data.first.tolist() == [3, 4] and data.choice.tolist() == [0, -1] and len(data.decided()) == 1
    prefs.append("r1", np.array([2]), Pairs(np.array([7]), np.array([8])), Labels(np.array([1], np.int8), np.ones(1, np.float32)))
    assert prefs.load().query.tolist() == [0, 1, 2] and prefs.answered("r1").tolist() == [0, 1, 2]
    other = EpisodeStore.open(write_store(tmp_path / "other.zarr", episodes=12, length=9))
    with pytest.raises(StoreError, match="these preferences belong to another store"):
        PreferenceDataset(other, prefs.root)


def test_label_store_records_provenance_and_skips_answered_queries(reach_store, tmp_path):
    store = EpisodeStore.open(reach_store)
    prefs = PreferenceDataset(store, tmp_path / "prefs")
    labeler = build_labeler({"name": "oracle", "noise": 0.1}, store, prefs.root)
    first = label_store(labeler, prefs, Sampling(queries=50, seed=4), chunk=16)
    assert first["answered_now"] == 50 and first["first"] + first["second"] + first["cant_tell"] == 50
    again = label_store(labeler, prefs, Sampling(queries=50, seed=4), chunk=16)
    assert again["answered_now"] == 0 and again["run_id"] == first["run_id"]
    more = label_store(labeler, prefs, Sampling(queries=20, seed=5), chunk=16)
    assert more["run_id"] != first["run_id"] and len(prefs.load()) == 70
    run = json.loads(prefs.runs_path.read_text().splitlines()[0])
    assert run["labeler"] == {"labeler": "oracle", "config": {"noise": 0.1, "margin": 0.0, "seed": 0}}
    assert run["sampling"]["queries"] == 50 and run["store"]["n_episodes"] == 6
    with pytest.raises(ConfigError, match="sampling=disagreement: expected model="):
        label_store(labeler, prefs, Sampling(queries=5, method="disagreement"))
