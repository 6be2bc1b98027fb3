"""Bradley-Terry reward model, success classifier, relabelling and evaluation on synthetic stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tensors import TransitionData
from reward_models.bt_model import BTConfig, BTRewardModel
from reward_models.evaluate import evaluate
from reward_models.features import FeatureConfig
from reward_models.labelers import Pairs
from reward_models.model import load_model
from reward_models.nets import ConvConfig, EnsembleConv, RewardNet
from reward_models.pairs import sample_uniform
from reward_models.preferences import PreferenceData
from reward_models.relabel import relabel
from reward_models.success import SuccessClassifier, SuccessConfig, calibrate

SMALL_CONV = ConvConfig(channels=[8, 16], kernels=[3, 3], strides=[2, 2])


def true_preferences(store: EpisodeStore, n: int, length: int = 1, seed: int = 0) -> PreferenceData:
    """Pairs labelled by the store's ``true`` reward (segment sums), as a perfect labeler would."""
    pairs = sample_uniform(store, n, length, np.random.default_rng(seed))
    true = store.reward("true")
    s1, s2 = true[pairs.rows("first")].sum(1), true[pairs.rows("second")].sum(1)
    return PreferenceData(first=pairs.first, second=pairs.second, length=np.full(n, length),
                          choice=(s2 > s1).astype(np.int8), confidence=np.ones(n, np.float32),
                          run=np.array(["synthetic"] * n, dtype=object), query=np.arange(n))


def bt_config(**changes) -> BTConfig:
    return BTConfig(**{"members": 3, "conv": SMALL_CONV, "epochs": 40, "device": "cpu", **changes})


def test_ensemble_conv_members_are_independent():
    conv = EnsembleConv(3, (16, 16, 3), SMALL_CONV)
    images = torch.randint(0, 255, (3, 5, 16, 16, 3), dtype=torch.uint8)
    out = conv(images)
    assert out.shape == (3, 5, conv.out_dim)
    changed = images.clone()
    changed[1] = 0
    diff = (conv(changed) - out).abs().sum(dim=(1, 2))
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 0
    net = RewardNet(3, {"image": (16, 16, 3), "state": 2}, [8], tanh=True, conv=SMALL_CONV)
    r = net.forward_shared({"image": images[0], "state": torch.zeros(5, 2)})
    assert r.shape == (3, 5) and r.abs().max() < 1


def test_bt_learns_a_known_preference_and_relabels_with_provenance(image_store, tmp_path):
    store = EpisodeStore.open(image_store)
    model = BTRewardModel.fit(bt_config(), store, true_preferences(store, 300), tmp_path / "features",
                              provenance={"labelling_runs": [{"labeler": {"labeler": "synthetic"}}]})
    assert model.metrics["heldout_accuracy"] > 0.9 and model.metrics["n_heldout"] == 60
    frame = model.frame_rewards(store)
    assert frame.min() == pytest.approx(-1.0, abs=1e-5) and frame.max() == pytest.approx(0.0, abs=1e-5)
    true = store.reward("true")
    assert np.corrcoef(frame, true)[0, 1] > 0.9

    model_dir = model.save(tmp_path / "bt")
    source = relabel(image_store, model_dir)
    assert source == f"vlm_pref_{model.hash}"
    with EpisodeStore.open(image_store) as s:
        rewards = s.reward(source)
        prov = s.reward_provenance(source)
        ends = s.episode_ends
    inside = np.setdiff1d(np.arange(len(rewards)), ends - 1)
    assert np.allclose(rewards[inside], frame[inside + 1], atol=1e-6)
    assert np.allclose(rewards[ends - 1], frame[ends - 1], atol=1e-6)
    assert prov["kind"] == "vlm_pref" and prov["model_hash"] == model.hash and "o_{t+1}" in prov["convention"]
    assert prov["model"]["metrics"]["n_decided"] == 300
    assert prov["model"]["training"]["labelling_runs"][0]["labeler"]["labeler"] == "synthetic"
    assert prov["model"]["params"]["normalisation"]["range"] == [-1.0, 0.0]
    assert relabel(image_store, model_dir) == source
    data = TransitionData.from_store(EpisodeStore.open(image_store), reward_source=source, device="cpu")
    assert data.n_steps == store.n_steps

    loaded = load_model(model_dir, device="cpu")
    assert loaded.hash == model.hash and np.allclose(loaded.frame_rewards(store), frame, atol=1e-6)
    obs = {"cam": store.read("obs/cam", 0, 10), "state": store.read("obs/state", 0, 10)}
    assert np.allclose(loaded(obs), frame[:10], atol=1e-5)
    assert torch.is_tensor(loaded({k: torch.as_tensor(v) for k, v in obs.items()}))

    metrics = evaluate(store, loaded, tmp_path / "eval", episodes=4)
    assert metrics["spearman_return"]["true"] > 0.8 and metrics["spearman_step"]["true"] > 0.8
    assert metrics["heldout_accuracy"] == model.metrics["heldout_accuracy"]
    assert (tmp_path / "eval" / "reward_eval.png").stat().st_size > 1000
    assert json.loads((tmp_path / "eval" / "reward_eval.json").read_text())["model_hash"] == model.hash


def test_bt_on_segments_with_state_and_cant_tell_dropped(image_store, tmp_path):
    store = EpisodeStore.open(image_store)
    prefs = true_preferences(store, 150, length=2, seed=1)
    prefs.choice[:20] = -1
    cfg = bt_config(features=FeatureConfig(lowdim_keys=["state"]), hidden=[16], epochs=20, reward_range=None)
    model = BTRewardModel.fit(cfg, store, prefs, None)
    assert model.metrics["n_decided"] == 130 and model.metrics["heldout_accuracy"] > 0.85
    assert model.params["normalisation"] is None


def test_bt_needs_decided_pairs_and_camera(image_store, lowdim_store):
    store = EpisodeStore.open(image_store)
    prefs = true_preferences(store, 5)
    prefs.choice[:] = -1
    with pytest.raises(StoreError, match=r"expected at least 2 decided \(not can't-tell\) pairs"):
        BTRewardModel.fit(bt_config(), store, prefs, None)
    from robot_learning.spec import SpecError

    blind = EpisodeStore.open(lowdim_store)
    with pytest.raises(SpecError, match="expected a camera"):
        BTRewardModel.fit(bt_config(), blind, true_preferences(blind, 10), None)


def test_bt_clip_features_through_the_embedding_cache(image_store, tiny_clip, tmp_path):
    store = EpisodeStore.open(image_store)
    clip = {**tiny_clip, "device": "cpu"}
    from reward_models.clip_encoder import ClipConfig

    cfg = bt_config(features=FeatureConfig(image="clip", clip=ClipConfig(**clip)), hidden=[32], epochs=60, lr=3e-3)
    model = BTRewardModel.fit(cfg, store, true_preferences(store, 300), tmp_path / "features")
    assert model.metrics["heldout_accuracy"] > 0.75
    cache = list((tmp_path / "features").glob("cam_*"))
    assert len(cache) == 1 and np.load(cache[0] / "filled.npy").all()
    loaded = load_model(model.save(tmp_path / "m"), device="cpu")
    assert np.allclose(loaded.frame_rewards(store, tmp_path / "features"), model.frame_rewards(store, tmp_path / "features"))


def test_success_classifier_separates_success_from_failure(image_store, tmp_path):
    store = EpisodeStore.open(image_store)
    cfg = SuccessConfig(conv=SMALL_CONV, hidden=[16], epochs=15, device="cpu", val_fraction=0.34)
    clf = SuccessClassifier.fit(cfg, store, None)
    assert clf.metrics["precision"] >= 0.9 and clf.metrics["recall"] >= 0.9
    frames = store.read("obs/cam")
    succ = np.asarray(store.episode_meta()["success"])
    last = store.episode_ends - 1
    reward = clf({"cam": frames[last], "state": store.read("obs/state")[last]})
    assert reward.dtype == np.float32 and set(np.unique(reward)) <= {0.0, 1.0}
    assert np.mean(reward == succ) >= 0.9
    assert clf({"cam": frames[store.episode_starts]}).sum() == 0
    source = relabel(image_store, clf.save(tmp_path / "clf"))
    assert source.startswith("success_clf_")
    with EpisodeStore.open(image_store) as s:
        prov = s.reward_provenance(source)
        assert prov["model"]["params"]["threshold"] == clf.params["threshold"]
        assert set(np.unique(s.reward(source))) <= {0.0, 1.0}
    metrics = evaluate(store, load_model(tmp_path / "clf", device="cpu"), tmp_path / "eval")
    assert metrics["store_precision"] >= 0.9 and metrics["spearman_return"]["true"] > 0.5


def test_success_needs_both_outcomes(lowdim_store, tmp_path):
    from tests.reward_models.conftest import write_store

    store = EpisodeStore.open(write_store(tmp_path / "one.zarr", episodes=1))
    with pytest.raises(StoreError, match="expected both successful and failed episodes, found 1 of 1 successful"):
        SuccessClassifier.fit(SuccessConfig(conv=SMALL_CONV, device="cpu"), store, None)


def test_calibrate_reaches_target_precision():
    prob = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    label = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    cal = calibrate(prob, label, target_precision=0.9)
    assert cal["precision"] == 1.0 and cal["recall"] == 0.75 and 0.7 < cal["threshold"] < 0.8
    loose = calibrate(prob, label, target_precision=0.75)
    assert loose["recall"] == 1.0 and 0.4 < loose["threshold"] < 0.6


def test_pairs_slice_and_rows():
    pairs = Pairs(np.array([0, 10, 20]), np.array([5, 15, 25]), 2)
    assert pairs[1:].rows("second").tolist() == [[15, 16], [25, 26]]
