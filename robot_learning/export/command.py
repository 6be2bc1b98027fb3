"""``robot-learning export``: a checkpoint's deterministic actor as one self-describing ONNX policy file.

    robot-learning export ckpt=runs/iql_maze out=policy.onnx
    robot-learning export ckpt=runs/iql_reach/checkpoints/offline_000100000.pt out=reach.onnx tolerance=1e-5
    robot-learning export ckpt=runs/unio4_push out=member2.onnx "variant='member=2'"

Loads the learner from the checkpoint (a file, or a run directory's latest), samples parity observations
from the run's dataset (or, when the run has none, from random-action rollouts in the simulated task) and
writes the file with :func:`~robot_learning.export.onnx_export.export_actor_onnx`: observation
normalisation, image preprocessing, squashing and action scaling inside the graph; the TaskSpec, the
algorithm, the variant, the checkpoint's SHA-256, the export time and the package version in its metadata.
The file is written only when onnxruntime reproduces torch within ``tolerance``.

``variant=`` selects what a learner with several deployable actors exports: the learner's
``export_actor(variant=...)`` receives it (e.g. an ensemble member or the whole ensemble); learners whose
``export_actor()`` takes no variant export their one actor (FamO2O's includes its balance model).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from robot_learning.algos.base import Algorithm
from robot_learning.config import ConfigError, build
from robot_learning.data.store import EpisodeStore
from robot_learning.export.onnx_export import ExportReport, export_actor_onnx, file_sha256
from robot_learning.spec import TaskSpec
from robot_learning.train import checkpoint as ckpt

log = logging.getLogger(__name__)
CONFIG = "export"


@dataclass
class ExportConfig:
    """configs/export.yaml (each key is documented there)."""

    ckpt: str | None = None
    out: str | None = None
    variant: str = ""
    tolerance: float = 1e-4
    parity_samples: int = 256
    seed: int = 0


def export_actor_module(algo: Algorithm, variant: str = "") -> nn.Module:
    """``algo.export_actor()``, or ``algo.export_actor(variant=...)`` for a learner whose export takes variants."""
    takes_variant = "variant" in inspect.signature(algo.export_actor).parameters
    if variant and not takes_variant:
        raise ConfigError(f"variant={variant}: expected no variant for algorithm '{algo.name}' (its export_actor() "
                          "exports one actor), found one")
    return algo.export_actor(variant=variant) if variant else algo.export_actor()


def export_algorithm(algo: Algorithm, out: str | Path, parity_obs: dict[str, np.ndarray], *, variant: str = "",
                     checkpoint_sha256: str = "", tolerance: float = 1e-4) -> ExportReport:
    """Export ``algo``'s deterministic actor (``variant``) to ``out`` with the parity gate on ``parity_obs``."""
    return export_actor_onnx(export_actor_module(algo, variant), algo.spec, algo.obs_keys, out, parity_obs=parity_obs,
                             algorithm=algo.name, variant=variant, checkpoint_sha256=checkpoint_sha256,
                             tolerance=tolerance)


def store_observations(path: str | Path, keys: list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` observations (distinct rows, all of them when fewer) sampled uniformly from an episode store."""
    with EpisodeStore.open(path) as store:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(store.n_steps, size=min(n, store.n_steps), replace=False))
        arrays = store.data_arrays()
        return {k: np.asarray(arrays[f"obs/{k}"].get_orthogonal_selection((rows,))) for k in keys}


def env_observations(spec: TaskSpec, keys: list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` observations of random-action rollouts in the simulated task (a run without a dataset)."""
    import sim

    env = sim.make_env(spec, obs_keys=keys, seed=seed)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(n):
            for k in keys:
                rows[k].append(obs[k])
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return {k: np.stack(v) for k, v in rows.items()}


def parity_observations(algo: Algorithm, checkpoint: dict[str, Any], n: int, seed: int
                        ) -> tuple[dict[str, np.ndarray], str]:
    """(observations, where they came from): the run's dataset when it is still there, else the simulator."""
    dataset = (checkpoint.get("config") or {}).get("dataset", {}).get("path")
    if dataset and Path(dataset).exists():
        return store_observations(dataset, algo.obs_keys, n, seed), str(dataset)
    if algo.spec.env is None:
        raise ConfigError(f"{checkpoint['path']}: parity observations: expected the run's dataset ({dataset}) or a "
                          f"simulated task, found neither (task '{algo.spec.name}' has no env)")
    if dataset:
        log.warning("dataset %s of the run is gone: parity observations come from the simulator", dataset)
    return env_observations(algo.spec, algo.obs_keys, n, seed), f"{algo.spec.name} simulator (random actions)"


def run(cfg: Any) -> int:
    """The ``robot-learning export`` verb (configs/export.yaml)."""
    c = build(ExportConfig, cfg, where=f"configs/{CONFIG}.yaml")
    if not c.ckpt or not c.out:
        raise ConfigError(f"configs/{CONFIG}.yaml: expected ckpt=<run dir or checkpoint> and out=<file.onnx>, found "
                          f"ckpt={c.ckpt!r}, out={c.out!r}")
    if c.parity_samples < 1:
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'parity_samples': expected at least 1, found {c.parity_samples}")
    algo, data = ckpt.load_algorithm(c.ckpt, key="ckpt", device="cpu")
    algo.eval()
    parity, source = parity_observations(algo, data, c.parity_samples, c.seed)
    sha = file_sha256(data["path"])
    report = export_algorithm(algo, c.out, parity, variant=c.variant, checkpoint_sha256=sha, tolerance=c.tolerance)
    print(f"exported {algo.name}{f' ({c.variant})' if c.variant else ''} from {data['path']} (sha256 {sha[:12]}) to "
          f"{report.path} ({report.size_bytes / 1e3:.1f} kB): inputs {list(report.obs_keys)}, output 'action'; "
          f"torch/onnxruntime max |difference| {report.max_abs_error:.2g} on {report.parity_samples} observations "
          f"from {source} (tolerance {report.tolerance:g})")
    return 0
