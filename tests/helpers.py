"""Small builders shared by tests: a toy TaskSpec and stores written through the real writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec

TOY_SPEC = {
    "name": "toy",
    "text": "move the dot to the corner",
    "control_hz": 10,
    "max_episode_steps": 50,
    "observations": {
        "state": {"shape": [3], "units": "m"},
        "cam": {"shape": [16, 16, 3], "kind": "rgb"},
    },
    "action": {"dim": 2, "low": -1.0, "high": 1.0},
}


def toy_spec(**changes) -> TaskSpec:
    return TaskSpec.from_dict({**TOY_SPEC, **changes})


def toy_episode(seed: int, length: int):
    """Deterministic (obs list, actions, rewards) for one toy episode."""
    rng = np.random.default_rng(seed)
    obs = [{"state": rng.normal(size=3).astype(np.float32),
            "cam": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)} for _ in range(length)]
    actions = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
    rewards = rng.normal(size=length).astype(np.float32)
    return obs, actions, rewards


def write_toy_store(path: Path, lengths=(5, 7, 4), terminal_last=(True, False, True), flush_steps=3,
                    spec: TaskSpec | None = None) -> EpisodeStore:
    store = EpisodeStore.create(path, spec or toy_spec(), source="test")
    with store.writer(flush_steps=flush_steps) as w:
        for e, (n, term) in enumerate(zip(lengths, terminal_last)):
            obs, actions, rewards = toy_episode(e, n)
            w.begin(seed=e)
            for t in range(n):
                w.add_step(obs[t], actions[t], reward=float(rewards[t]), terminal=term and t == n - 1)
            w.end(success=term)
    return store
