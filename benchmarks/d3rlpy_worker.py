"""d3rlpy side of benchmarks/train_speed.py; runs inside its own virtualenv (d3rlpy 2.8.1 pins gymnasium 1.0.0).

A long-lived worker, so the comparison can interleave rounds with ours: it builds the same synthetic data as
train_speed.py (1M transitions, obs 17, act 6, 1000-step episodes), then answers one JSON request per stdin
line, ``{"algo": ..., "threads": n, "steps": k, "mode": "loop" | "update"}``, with wall and process CPU
seconds ``{"seconds": t, "cpu_seconds": c}`` of k gradient updates: "loop" samples each batch with d3rlpy's
own sampler (what ``fit`` does per step), "update" reuses one pre-sampled batch (the update alone).
Algorithms use d3rlpy's defaults at 256x256 networks.
Replies are stdout lines starting with ``REPLY`` (d3rlpy logs to stdout too).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

import d3rlpy

OBS_DIM, ACT_DIM, EPISODE_LEN = 17, 6, 1000
REPLY = "REPLY"


def dataset(n: int, seed: int) -> d3rlpy.dataset.ReplayBuffer:
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[EPISODE_LEN - 1::EPISODE_LEN] = True
    return d3rlpy.dataset.MDPDataset(
        observations=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=timeouts,
    )


def build(name: str, data: d3rlpy.dataset.ReplayBuffer):
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256])
    nets = {"actor_encoder_factory": enc, "critic_encoder_factory": enc, "batch_size": 256}
    configs = {
        "iql": lambda: d3rlpy.algos.IQLConfig(value_encoder_factory=enc, **nets),
        "td3_bc": lambda: d3rlpy.algos.TD3PlusBCConfig(**nets),
        "calql": lambda: d3rlpy.algos.CalQLConfig(n_action_samples=10, **nets),
        "sac": lambda: d3rlpy.algos.SACConfig(n_critics=2, **nets),
        "sac_n10": lambda: d3rlpy.algos.SACConfig(n_critics=10, **nets),
    }
    algo = configs[name]().create(device="cpu:0")
    algo.build_with_dataset(data)
    return algo


def reply(message: dict) -> None:
    print(REPLY, json.dumps(message), flush=True)


def main() -> None:
    d3rlpy.seed(0)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    data = dataset(n, seed=0)
    algos: dict[str, object] = {}
    batches: dict[str, object] = {}
    reply({"ready": True, "d3rlpy": d3rlpy.__version__, "torch": torch.__version__})
    for line in sys.stdin:
        req = json.loads(line)
        name = req["algo"]
        if name not in algos:
            algos[name] = build(name, data)
            batches[name] = data.sample_transition_batch(256)
        algo = algos[name]
        torch.set_num_threads(int(req["threads"]))
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(int(req["steps"])):
            batch = data.sample_transition_batch(256) if req["mode"] == "loop" else batches[name]
            algo.update(batch)
        reply({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu})


if __name__ == "__main__":
    main()
