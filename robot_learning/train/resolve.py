"""From a command line, a config and checkpoints to the ingredients of a run.

A run's task, learner and data can come from three places that must agree: the config (``task=``,
``algo=``, ``dataset=``), an ``init=`` checkpoint (fine-tuning: its learner, config, task and dataset are
the defaults) and, with ``resume``, the run's own latest checkpoint (everything, including the random
streams). Disagreements stop the run with one message naming the checkpoint or store.

Command-line conventions: ``dataset=<path>`` is shorthand for ``dataset.path=<path>`` (DESIGN.md section 9
writes both ``dataset=data/maze.zarr`` and ``dataset.reward=<source>``, which Hydra cannot compose as
given); ``algo.<field>=<value>`` without ``algo=<name>`` applies to the init checkpoint's algorithm config;
a resumed run replays the overrides it was started with (``overrides.yaml``), then the new ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from robot_learning.algos.base import ALGORITHMS, Algorithm, make_algorithm
from robot_learning.config import ConfigError, build, compose, to_plain
from robot_learning.config import asdict as config_asdict
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tensors import TransitionData, resolve_device
from robot_learning.spec import TaskSpec
from robot_learning.train import checkpoint as ckpt
from robot_learning.train import rng
from robot_learning.train.config import RunConfig
from robot_learning.train.rewards import OnlineReward, resolve_online_reward

log = logging.getLogger(__name__)

#: Overrides that only say where a run lives; a resumed run does not replay them.
LOCATION_KEYS = ("resume", "run_dir")
#: The command-line overrides of a run, saved in its directory for resume.
OVERRIDES_FILE = "overrides.yaml"


@dataclass
class RunInputs:
    """Everything a :class:`~robot_learning.train.run.Run` is built from."""

    cfg: RunConfig
    resolved: dict[str, Any]
    overrides: list[str]
    run_dir: Path
    device: torch.device
    spec: TaskSpec
    algo: Algorithm
    data: TransitionData | None
    reward_source: str
    resume_from: dict[str, Any] | None
    #: How online transitions are rewarded (None without an online phase).
    online_reward: OnlineReward | None = None


# ==================================================================================== command line
def verb_overrides(args: Sequence[str]) -> list[str]:
    """Command-line tokens of a run verb as Hydra overrides (``--resume``, the ``dataset=<path>`` shorthand)."""
    from robot_learning.cli import parse_overrides

    out = []
    for o in parse_overrides(args, ()):
        key, _, value = o.partition("=")
        out.append(f"dataset.path={value}" if key == "dataset" else o)
    return out


def composable(overrides: Sequence[str]) -> list[str]:
    """The overrides Hydra can compose: ``algo.<field>=`` needs ``algo=<name>`` (else it is applied to the init
    checkpoint's algorithm config by :func:`resolve_algo`)."""
    if any(o.partition("=")[0] == "algo" for o in overrides):
        return list(overrides)
    return [o for o in overrides if not o.startswith("algo.")]


def explicit_algo_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """The ``algo.<field>=<value>`` overrides given on the command line (they win over an init checkpoint's)."""
    found = {}
    for o in overrides:
        key, _, value = o.partition("=")
        if key.startswith("algo."):
            found[key[len("algo."):]] = value
    return found


def compose_command_line(config_name: str, args: Sequence[str]) -> tuple[DictConfig, list[str]]:
    """(composed config, effective overrides) of a run verb; a resume replays the run's saved overrides first."""
    overrides = verb_overrides(args)
    node = compose(config_name, composable(overrides))
    if node.get("resume"):
        saved = default_run_dir(node, config_name) / OVERRIDES_FILE
        if saved.is_file():
            previous = [o for o in yaml.safe_load(saved.read_text()) or [] if o.partition("=")[0] not in LOCATION_KEYS]
            overrides = previous + overrides
            node = compose(config_name, composable(overrides))
    return node, overrides


# ==================================================================================== run ingredients
def resolve_inputs(node: Any, overrides: Sequence[str], verb: str) -> RunInputs:
    """Resolve run directory, checkpoints, task, learner (weights loaded) and prepared data for a run."""
    cfg = build(RunConfig, node, where=f"configs/{verb}.yaml")
    resolved = to_plain(node)
    run_dir = default_run_dir(node, verb)
    device = resolve_device(cfg.device)
    resume_from = resume_checkpoint(cfg, run_dir)
    init = ckpt.load(cfg.init, key="init") if cfg.init and resume_from is None else None
    source = resume_from or init
    dataset_path, reward = cfg.dataset.path, cfg.dataset.reward
    if init is not None:
        dataset_path = dataset_path or init["config"]["dataset"]["path"]
        reward = reward or init["config"]["dataset"]["reward"]
    store = EpisodeStore.open(dataset_path) if dataset_path else None
    spec = resolve_spec(cfg, store, source)
    name, algo_node = resolve_algo(cfg, overrides, source)
    rng.seed_everything(cfg.seed)
    algo = make_algorithm(name, algo_node, spec, device)
    if source is not None:
        algo.load_state_dict(source["algo"]["state_dict"])
        algo.load_training_state(source["algo"]["training_state"])
        log.info("learner %s loaded from %s", name, source["path"])
    check_phases(cfg, algo, store)
    data = None
    extra = list(cfg.dataset.extra)
    if init is not None and not extra:
        extra = list(init["config"]["dataset"].get("extra") or [])
    if extra and store is None:
        raise ConfigError(f"dataset.extra={extra}: expected a main store (dataset=<path>) to add them to, found none")
    if store is not None:
        reward = reward or store.default_reward_source()
        data = algo.prepare(load_transitions([store, *(open_extra(path, spec) for path in extra)], algo.obs_keys,
                                             reward, device))
        log.info("dataset %s: %d transitions in %d episodes on %s", data.source, data.n_transitions,
                 data.n_episodes, device)
    reward = reward or spec.default_reward
    online_reward = None
    if cfg.train.online_steps > 0:  # refuse an online phase that cannot be rewarded like the offline data
        online_reward = resolve_online_reward(spec, reward, store, cfg.online.reward_model, device)
    if spec.env is None and cfg.eval.episodes > 0:
        log.warning("task '%s' has no simulator (no 'env' in its spec): evaluation is off", spec.name)
    resolved["algo"] = {"name": name, **config_asdict(algo.config)}
    resolved["dataset"] = {**resolved["dataset"], "path": dataset_path, "reward": reward, "extra": extra}
    resolved["run_dir"] = str(run_dir)
    return RunInputs(cfg, resolved, list(overrides), run_dir, device, spec, algo, data, reward, resume_from,
                     online_reward)


def open_extra(path: str, spec: TaskSpec) -> EpisodeStore:
    """A store of ``dataset.extra``: it must fit the run's task like the main store."""
    store = EpisodeStore.open(path)
    diffs = spec.differences(store.spec)
    if diffs:
        raise StoreError(f"{store.path}: dataset.extra store of task '{store.spec.name}' does not fit task "
                         f"'{spec.name}': " + "; ".join(diffs))
    return store


def load_transitions(stores: Sequence[EpisodeStore], obs_keys: Sequence[str], reward: str,
                     device: torch.device) -> TransitionData:
    """The committed data of ``stores`` (the main store, then ``dataset.extra``) as one TransitionData.

    Episodes keep their boundaries; every store must carry the reward source ``reward``, so the extra data
    (RoboFuME's target-task demos next to its prior data) is rewarded exactly like the main store.
    """
    parts = [TransitionData.from_store(store, obs_keys=obs_keys, reward_source=reward, device=device)
             for store in stores]
    if len(parts) == 1:
        return parts[0]
    offsets = torch.cumsum(torch.tensor([0] + [p.n_steps for p in parts[:-1]], device=device), 0)
    return TransitionData(obs={k: torch.cat([p.obs[k] for p in parts]) for k in obs_keys},
                          action=torch.cat([p.action for p in parts]), reward=torch.cat([p.reward for p in parts]),
                          terminal=torch.cat([p.terminal for p in parts]),
                          episode_ends=torch.cat([p.episode_ends + o for p, o in zip(parts, offsets)]),
                          source=" + ".join(p.source for p in parts))


def resume_checkpoint(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint of ``run_dir`` with ``resume``; without it, refuse a directory that holds a run."""
    if cfg.resume:
        latest = ckpt.CheckpointManager(run_dir, 1).latest()
        if latest is None:
            raise ConfigError(f"resume=true: expected a checkpoint in {run_dir / ckpt.CHECKPOINT_DIR}, found none "
                              "(give the run's run_dir=)")
        return ckpt.load(latest, key="resume")
    if any(run_dir.glob(f"{ckpt.CHECKPOINT_DIR}/*.pt")):
        raise ConfigError(f"run_dir={run_dir}: expected a new run directory, found a run with checkpoints; pass "
                          "resume=true to continue it or choose another run_dir")
    return None


def default_run_dir(node: Any, verb: str) -> Path:
    """``run_dir`` if given, else ``runs/<date>/<name>``; the name (or ``name=``) reads like
    ``iql_point_maze_umaze_s0`` or, for a fine-tuning run, ``finetune_<init run>_s0``."""
    if node.get("run_dir"):
        return Path(node["run_dir"])
    algo = (node.get("algo") or {}).get("name")
    task = (node.get("task") or {}).get("name") or (
        Path(str(node["dataset"]["path"])).stem if (node.get("dataset") or {}).get("path") else None)
    init = Path(str(node["init"])).name if node.get("init") else None
    parts = [verb if verb != "train" else None, init or algo, None if init else task, f"s{node.get('seed', 0)}"]
    name = node.get("name") or "_".join(p for p in parts if p)
    base = Path("runs") / time.strftime("%Y-%m-%d") / name
    if node.get("resume"):
        return base
    candidate, n = base, 1
    while any(candidate.glob(f"{ckpt.CHECKPOINT_DIR}/*.pt")):
        n += 1
        candidate = base.with_name(f"{name}_{n}")
    return candidate


def resolve_spec(cfg: RunConfig, store: EpisodeStore | None, source: Mapping[str, Any] | None) -> TaskSpec:
    """The run's TaskSpec: ``task=``, else the checkpoint's, else the dataset's; all given ones must agree."""
    task = TaskSpec.from_dict(cfg.task, source=f"configs/task/{cfg.task.get('name')}.yaml") if cfg.task else None
    saved = TaskSpec.from_dict(source["task_spec"], source=f"{source['path']} (task_spec)") if source else None
    spec = task or saved or (store.spec if store is not None else None)
    if spec is None:
        raise ConfigError("task: expected task=<name>, a dataset=<store> or an init=<checkpoint> to define the task, "
                          "found none of them")
    if saved is not None and (saved.name != spec.name or saved.differences(spec)):
        why = "; ".join(saved.differences(spec)) or f"task name '{saved.name}'"
        raise ConfigError(f"{source['path']}: checkpoint of task '{saved.name}', expected task '{spec.name}' ({why})")
    if store is not None:
        diffs = spec.differences(store.spec)
        if diffs:
            raise StoreError(f"{store.path}: dataset of task '{store.spec.name}' does not fit task '{spec.name}': "
                             + "; ".join(diffs))
        if store.spec.name != spec.name:
            log.warning("%s: dataset recorded as task '%s', training for task '%s' (same interface)", store.path,
                        store.spec.name, spec.name)
    return spec


def resolve_algo(cfg: RunConfig, overrides: Sequence[str], source: Mapping[str, Any] | None) -> tuple[str, Any]:
    """(algorithm name, config node): ``algo=``, or a checkpoint's config with ``algo.<field>=`` overrides on top."""
    if source is None:
        if cfg.algo is None:
            raise ConfigError(f"algo: expected algo=<name> (one of {sorted(ALGORITHMS)}), found none")
        return cfg.algo["name"], cfg.algo
    saved = source["algo"]
    if cfg.algo is not None and cfg.algo["name"] != saved["name"]:
        raise ConfigError(f"{source['path']}: checkpoint of algorithm '{saved['name']}', "
                          f"expected algo={cfg.algo['name']}")
    explicit = explicit_algo_overrides(overrides)
    node = OmegaConf.merge(OmegaConf.create(saved["config"]),
                           OmegaConf.from_dotlist([f"{k}={v}" for k, v in explicit.items()]))
    return saved["name"], node


def check_phases(cfg: RunConfig, algo: Algorithm, store: EpisodeStore | None) -> None:
    """Reject phase settings the learner or the data cannot serve, before any work starts."""
    c = cfg.train
    if c.offline_steps < 0 or c.online_steps < 0:
        raise ConfigError(f"train.offline_steps/online_steps: expected non-negative step counts, found "
                          f"{c.offline_steps}/{c.online_steps}")
    if c.offline_steps > 0 and algo.batch_kind == "rollout":
        raise ConfigError(f"train.offline_steps={c.offline_steps}: {algo.name} learns from on-policy rollouts only; "
                          "expected train.offline_steps=0 (use the finetune verb)")
    required = algo.offline_length()
    if c.offline_steps > 0 and required is not None and c.offline_steps != required:
        raise ConfigError(f"train.offline_steps={c.offline_steps}: {algo.name}'s offline schedule is {required} updates "
                          f"(the sum of its stage lengths); expected train.offline_steps={required} or 0")
    if c.offline_steps > 0 and store is None:
        raise ConfigError(f"dataset: expected dataset=<path of an episode store> for train.offline_steps="
                          f"{c.offline_steps}, found none")
    if c.offline_steps == 0 and c.online_steps == 0:
        raise ConfigError("train.offline_steps/online_steps: expected at least one positive phase, found both 0")
    if cfg.online.num_envs < 1 or cfg.eval.num_envs < 1:
        raise ConfigError(f"online.num_envs/eval.num_envs: expected at least 1, found {cfg.online.num_envs}/"
                          f"{cfg.eval.num_envs}")
