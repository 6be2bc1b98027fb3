"""Evaluate a checkpoint's deterministic policy in simulation: return, success rate, normalised score.

Examples:
    robot-learning eval ckpt=runs/iql_maze episodes=50
    robot-learning eval ckpt=runs/iql_maze/checkpoints/offline_000100000.pt video=true frames=12
    robot-learning eval ckpt=runs/h2o_push dynamics=heavy
    robot-learning eval ckpt=policy.onnx episodes=50          (an exported policy, through onnxruntime)

Writes eval.json (and episode.mp4 / frames.png) to out= (default <run_dir>/eval/<checkpoint name>, or
eval/<file name> next to an ONNX file).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robot_learning.config import ConfigError
from robot_learning.data.tensors import resolve_device
from robot_learning.spec import TaskSpec
from robot_learning.train import checkpoint as ckpt
from robot_learning.train.envs import EnvRunner, eval_reward_kwargs, make_vector_env
from robot_learning.train.evaluate import Policy, deterministic_policy, evaluate
from robot_learning.train.media import write_media

log = logging.getLogger(__name__)


def load_policy(path: str, device: torch.device) -> tuple[Policy, TaskSpec, list[str], dict[str, Any]]:
    """(policy, TaskSpec, observation keys, provenance) of a checkpoint file, run directory or ONNX policy file."""
    if Path(path).suffix == ".onnx":
        return onnx_policy(path, device)
    algo, data = ckpt.load_algorithm(path, key="ckpt", device=device)
    meta = {"checkpoint": data["path"], "algo": algo.name, "reward": data["config"]["dataset"]["reward"],
            "run_dir": data["config"].get("run_dir"),
            "state": {k: data["state"][k] for k in ("offline_step", "online_step")}}
    return deterministic_policy(algo), algo.spec, list(algo.obs_keys), meta


def onnx_policy(path: str, device: torch.device) -> tuple[Policy, TaskSpec, list[str], dict[str, Any]]:
    """An exported policy file (``robot-learning export``) run by onnxruntime: the TaskSpec from its metadata."""
    from robot_learning.export.runtime import OnnxPolicy

    onnx = OnnxPolicy(path, device="cuda" if device.type == "cuda" else "cpu")

    def policy(obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(onnx({k: v.cpu().numpy() for k, v in obs.items()})).to(device)

    meta = {"checkpoint": str(path), "algo": onnx.algorithm, "reward": None, "run_dir": None, "state": None,
            "onnx": {k: v for k, v in onnx.metadata.items() if k != "robot_learning.task_spec"}}
    return policy, onnx.spec, list(onnx.obs_keys), meta


def run(cfg: Mapping[str, Any]) -> int:
    """The ``robot-learning eval`` verb (configs/eval.yaml)."""
    if not cfg.get("ckpt"):
        raise ConfigError("eval: expected ckpt=<checkpoint file or run directory>, found none")
    if int(cfg["episodes"]) < 1:
        raise ConfigError(f"eval.episodes: expected at least 1, found {cfg['episodes']}")
    device = resolve_device(cfg["device"])
    policy, spec, obs_keys, meta = load_policy(str(cfg["ckpt"]), device)
    env_kwargs = eval_reward_kwargs(spec)
    seed = int(cfg["seed"]) + int(cfg["seed_offset"])
    envs = make_vector_env(spec, min(int(cfg["num_envs"]), int(cfg["episodes"])), obs_keys, int(cfg["seed"]),
                           dynamics=cfg.get("dynamics"), env_kwargs=env_kwargs)
    runner = EnvRunner(envs, obs_keys, device, spec)
    try:
        result = evaluate(policy, runner, int(cfg["episodes"]), seed, spec)
    finally:
        runner.close()
    checkpoint = Path(meta["checkpoint"])
    base = checkpoint.parent if checkpoint.suffix == ".onnx" else checkpoint.parents[1]
    out = Path(cfg["out"]) if cfg.get("out") else base / "eval" / checkpoint.stem
    out.mkdir(parents=True, exist_ok=True)
    media = write_media(policy, spec, obs_keys, device, seed, out, video=bool(cfg["video"]), frames=int(cfg["frames"]),
                        dynamics=cfg.get("dynamics"), env_kwargs=env_kwargs)
    report = {**meta, "task": spec.name, "dynamics": cfg.get("dynamics"), **result.to_dict(), "media": media}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    score = "" if result.normalized_score is None else f", normalised score {result.normalized_score:.1f}"
    print(f"{meta['algo']} on {spec.name}: return {result.return_mean:.3f} +- {result.return_std:.3f}, success "
          f"{result.success_rate:.2f}{score} over {result.episodes} episodes; {out / 'eval.json'}")
    return 0
