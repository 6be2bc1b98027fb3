"""Fixtures of the reward-model tests: synthetic stores with a known reward, a tiny open_clip checkpoint.

In the synthetic stores the task progress is visible: frame brightness and the first state entry
both equal the progress p in [0, 1], which rises through successful episodes and stays low in failed
ones. A model that learns "brighter is better" has learned the task's reward.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec

SIZE = 16

SPEC = {
    "name": "glow",
    "text": "make the image bright",
    "control_hz": 10,
    "max_episode_steps": 20,
    "observations": {
        "state": {"shape": [3]},
        "cam": {"shape": [SIZE, SIZE, 3], "kind": "rgb"},
    },
    "action": {"dim": 1, "low": -1.0, "high": 1.0},
}

#: A tiny open_clip architecture (random init): real loading code, no download, fast.
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def progress_of(episode: int, length: int, success: bool) -> np.ndarray:
    """Progress of each step: rising to 1 in successful episodes, wandering below 0.5 in failed ones."""
    t = np.linspace(0.0, 1.0, length)
    return t if success else 0.45 * np.abs(np.sin(t * 3 + episode))


def frames_of(progress: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames whose brightness is the progress, plus a little pixel noise."""
    base = (progress[:, None, None, None] * 220 + 15).repeat(SIZE, 1).repeat(SIZE, 2).repeat(3, 3)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def write_store(path: Path, episodes: int = 12, length: int = 10, camera: bool = True, seed: int = 0) -> Path:
    """A store of ``episodes`` episodes (every other one successful) with a ``true`` reward = progress."""
    spec = dict(SPEC) if camera else {**SPEC, "observations": {"state": SPEC["observations"]["state"]}}
    store = EpisodeStore.create(path, TaskSpec.from_dict(spec), source="test")
    rng = np.random.default_rng(seed)
    with store.writer() as w:
        for e in range(episodes):
            success = e % 2 == 0
            p = progress_of(e, length, success)
            frames = frames_of(p, rng)
            w.begin()
            for t in range(length):
                obs = {"state": np.array([p[t], rng.normal(), rng.normal()], np.float32)}
                if camera:
                    obs["cam"] = frames[t]
                w.add_step(obs, np.zeros(1, np.float32), reward={"true": float(p[t])}, terminal=success and t == length - 1)
            w.end(success=success)
    store.close()
    return path


@pytest.fixture
def image_store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "glow.zarr")


@pytest.fixture
def lowdim_store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "blind.zarr", episodes=4, camera=False)


def save_tiny_clip(directory: Path, name: str, cfg: dict) -> tuple[Path, Path]:
    """Write an open_clip model config ``<name>.json`` and a random-init checkpoint of it; returns both paths."""
    import open_clip

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{name}.json"
    config.write_text(json.dumps(cfg))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(name)
    checkpoint = directory / f"{name}.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Arch name, model config and checkpoint of the tiny open_clip model."""
    config, checkpoint = save_tiny_clip(tmp_path_factory.mktemp("clip"), "TinyCLIP-test", TINY_CLIP)
    return {"arch": "TinyCLIP-test", "model_config": str(config), "pretrained": str(checkpoint)}


@pytest.fixture(scope="session")
def reach_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ``arm_reach`` store (6 mixed-tier episodes, 64x64 camera) from ``sim.generate_dataset``.

    Generated in a child process: once MuJoCo's EGL renderer has run in a process, the first torch
    optimiser (which imports triton lazily) crashes it, so the test process never renders.
    """
    path = tmp_path_factory.mktemp("sim") / "reach.zarr"
    code = f"import sim; sim.generate_dataset('arm_reach', 'mixed', 6, 0, {str(path)!r}, progress_bar=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path
