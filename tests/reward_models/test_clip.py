"""open_clip loading (architecture name + local checkpoint, strict) and the clip labeler with its embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import SpecError
from reward_models.clip_encoder import ClipConfig, ClipEncoder
from reward_models.labelers import Pairs, build_labeler
from tests.reward_models.conftest import TINY_CLIP, save_tiny_clip


def test_tiny_checkpoint_loads_through_the_real_loader(tiny_clip):
    encoder = ClipEncoder(ClipConfig(device="cpu", **tiny_clip))
    frames = np.random.default_rng(0).integers(0, 255, (5, 40, 24, 3), dtype=np.uint8)
    emb = encoder.encode_images(frames)
    assert emb.shape == (5, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert encoder.encode_texts(["touch the ball"]).shape == (1, 16)
    assert encoder.identity()["weights_sha256"]


def test_checkpoint_of_another_architecture_is_a_clear_error(tiny_clip, tmp_path):
    other = {**TINY_CLIP, "embed_dim": 24, "vision_cfg": {**TINY_CLIP["vision_cfg"], "width": 48}}
    config, _ = save_tiny_clip(tmp_path, "TinyCLIP-other", other)
    with pytest.raises(ConfigError, match=r"TinyCLIP-test\.pt: expected a checkpoint of open_clip architecture "
                                          r"'TinyCLIP-other', found one that does not fit it \(size mismatch"):
        ClipEncoder(ClipConfig(arch="TinyCLIP-other", model_config=str(config), pretrained=tiny_clip["pretrained"],
                               device="cpu"))


def test_uncached_tag_is_refused_not_downloaded(tmp_path):
    with pytest.raises(ConfigError, match="not in the local cache and downloads are off"):
        ClipEncoder(ClipConfig(arch="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path), device="cpu"))
    with pytest.raises(ConfigError, match="expected an open_clip architecture"):
        ClipEncoder(ClipConfig(arch="NoSuchNet", pretrained=str(tmp_path / "x.pt"), device="cpu"))


def test_clip_labeler_caches_frame_embeddings(tiny_clip, image_store, tmp_path, monkeypatch):
    store = EpisodeStore.open(image_store)
    labeler = build_labeler({"name": "clip", "clip": {**tiny_clip, "device": "cpu"}}, store, tmp_path)
    pairs = Pairs(np.array([0, 5, 30]), np.array([9, 50, 31]))
    labels = labeler.label(pairs)
    assert labels.choice.dtype == np.int8 and set(labels.choice) <= {-1, 0, 1}
    assert np.all((labels.confidence >= 0.5) & (labels.confidence <= 1))
    calls = []
    monkeypatch.setattr(labeler.encoder, "encode_images", lambda x: calls.append(len(x)))
    again = labeler.label(pairs)
    assert calls == [] and np.array_equal(again.choice, labels.choice)
    assert labeler.provenance()["encoder"]["arch"] == "TinyCLIP-test"


def test_clip_labeler_needs_a_camera(tiny_clip, lowdim_store, tmp_path):
    store = EpisodeStore.open(lowdim_store)
    with pytest.raises(SpecError, match=r"blind\.zarr: task 'glow' observations: expected a camera \(kind: rgb\) for "
                                        r"labeler 'clip', found only low-dim keys \['state'\]"):
        build_labeler({"name": "clip", "clip": {**tiny_clip, "device": "cpu"}}, store, tmp_path)
