r"""Write a corrupted copy of a store (RIQL's corruption protocol; the input is never edited).

    robot-learning dataset corrupt data/maze.zarr out=data/maze_obs.zarr kind=obs mode=random rate=0.3 scale=1.0
    robot-learning dataset corrupt data/maze.zarr out=data/maze_adv.zarr kind=action mode=adversarial \
        attack.critic=runs/iql_maze

``kind`` is obs | action | reward | dynamics (next observations), ``mode`` random | adversarial; see
robot_learning/data/corrupt.py for the formulas and for how obs/dynamics map onto stored rows. Adversarial
obs/action/dynamics corruption attacks the critic of ``attack.critic`` (a run directory or checkpoint of
a learner with a Q-ensemble: iql, riql, sac_n, cql, ...). The new store records the corruption in its
attrs (``corruption``, a list: one entry per pass) and flags the picked transitions in the per-step extra
``data/corrupted`` (ORed with an existing flag).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_learning.config import ConfigError
from robot_learning.data import corrupt as cr
from robot_learning.data.store import Episode, EpisodeStore
from robot_learning.data.tensors import resolve_device
from robot_learning.data.tools.building import bulk_writer, check_output, copy_episodes, staged_store
from robot_learning.data.tools.common import console, load_config, require
from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)

CONFIG = "dataset_corrupt"
#: The per-step extra that flags corrupted transitions.
FLAG = "corrupted"


@dataclass
class AttackConfig:
    """``attack``: the adversarial corruption's critic and its projected attack (RIQL attack.py)."""

    # Run directory or checkpoint whose critic (and, for dynamics, actor) is attacked (attack.py: pretrained EDAC).
    critic: str | None = None
    # Signed-gradient steps (attack.py Attack update_times=100).
    steps: int = 100
    # Step size per iteration, times scale (attack.py step_size=0.01; Adam lr = step_size * corruption_range).
    step_size: float = 0.01
    # Rows attacked per forward pass (memory bound only; rows are attacked independently).
    chunk_rows: int = 8192


@dataclass
class CorruptConfig:
    """configs/dataset_corrupt.yaml."""

    path: str | None = None
    out: str | None = None
    # obs | action | reward | dynamics.
    kind: str | None = None
    # random | adversarial.
    mode: str = "random"
    # Fraction of transitions corrupted (RIQL README: corruption_rate 0.3).
    rate: float = 0.3
    # Corruption range (RIQL README: corruption_range 1.0).
    scale: float = 1.0
    # Seeds the transition choice, the random values and the attack's starting points.
    seed: int = 0
    # Observation keys corrupted by obs/dynamics; null = every low-dimensional key.
    keys: list[str] | None = None
    # Reward source corrupted by kind=reward; null = the store's default source.
    reward: str | None = None
    # Device of the adversarial attack: auto | cpu | cuda.
    device: str = "auto"
    overwrite: bool = False
    attack: AttackConfig = field(default_factory=AttackConfig)

    def check(self) -> None:
        """One clear error per bad field."""
        require(self.path, "path", CONFIG, "the store to corrupt")
        require(self.out, "out", CONFIG, "the path of the corrupted store")
        if self.kind not in cr.KINDS:
            raise ConfigError(f"configs/{CONFIG}.yaml: key 'kind': expected one of {list(cr.KINDS)}, "
                              f"found {self.kind!r}")
        if self.mode not in cr.MODES:
            raise ConfigError(f"configs/{CONFIG}.yaml: key 'mode': expected one of {list(cr.MODES)}, "
                              f"found {self.mode!r}")
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"configs/{CONFIG}.yaml: key 'rate': expected a fraction in (0, 1], found {self.rate}")
        if not self.scale > 0:
            raise ConfigError(f"configs/{CONFIG}.yaml: key 'scale': expected a positive range, found {self.scale}")
        if self.mode == "adversarial" and self.kind != "reward":
            require(self.attack.critic, "attack.critic", CONFIG,
                    "a run directory or checkpoint whose critic the adversarial corruption attacks")
        if self.attack.steps < 1 or self.attack.chunk_rows < 1:
            raise ConfigError(f"configs/{CONFIG}.yaml: keys 'attack.steps'/'attack.chunk_rows': expected positive "
                              f"integers, found {self.attack.steps}/{self.attack.chunk_rows}")


# ------------------------------------------------------------------------------------------------ the critic
class Critic:
    """A trained learner's critic and actor on raw observations and task-unit actions, frozen."""

    def __init__(self, path: str, store: EpisodeStore, device: torch.device):
        from robot_learning.algos.base import make_algorithm  # the learner layer, only for adversarial mode
        from robot_learning.train import checkpoint as ckpt

        data = ckpt.load(path, key="attack.critic")
        spec = TaskSpec.from_dict(data["task_spec"], source=f"{data['path']} (task_spec)")
        algo = make_algorithm(data["algo"]["name"], data["algo"]["config"], spec, device)
        algo.load_state_dict(data["algo"]["state_dict"])
        algo.eval().requires_grad_(False)
        if not hasattr(algo, "critic") or not hasattr(algo, "encoder"):
            raise ConfigError(f"attack.critic={data['path']}: expected a learner with a Q-function (iql, riql, sac_n, "
                              f"cql, ...), found '{algo.name}'")
        bad = [k for k in algo.obs_keys if k not in store.spec.obs or spec.obs[k].shape != store.spec.obs[k].shape
               or spec.obs[k].is_image]
        if bad or spec.action.dim != store.spec.action.dim:
            raise ConfigError(f"attack.critic={data['path']}: expected a critic of low-dimensional keys of "
                              f"{store.path} and action dim {store.spec.action.dim}, found keys {bad} / action dim "
                              f"{spec.action.dim}")
        self.algo = algo
        self.obs_keys = list(algo.obs_keys)
        self.policy = algo.export_actor().to(device)
        self.info = {"checkpoint": data["path"], "algo": algo.name, "obs_keys": self.obs_keys}

    def q(self, obs: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        """Mean over the ensemble of Q(s, a), (N,)."""
        algo = self.algo
        return algo.critic(algo.encoder(obs), algo.scaler.to_unit(action)).mean(0)


# ------------------------------------------------------------------------------------------------ corrupting
def transition_rows(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
    """(rows that are transitions, rows with a stored next observation), as TransitionData defines them."""
    ends = store.episode_ends
    end_of_row = np.repeat(ends, store.episode_lengths)
    rows = np.arange(store.n_steps)
    has_next = rows + 1 < end_of_row
    return np.flatnonzero(has_next | store.read("terminal").astype(bool)), np.flatnonzero(has_next)


def in_chunks(rows: np.ndarray, size: int):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def corrupt_store(c: CorruptConfig) -> Path:
    """Write the corrupted copy of ``c.path`` to ``c.out``; returns ``c.out``."""
    c.check()
    out = check_output(c.out, [c.path], c.overwrite)
    src = EpisodeStore.open(c.path)
    spec = src.spec
    rng = np.random.default_rng(c.seed)
    transitions, with_next = transition_rows(src)
    chosen = cr.select_transitions(with_next if c.kind == "dynamics" else transitions, c.rate, rng)
    changed = chosen + 1 if c.kind == "dynamics" else chosen
    record: dict[str, Any] = {"kind": c.kind, "mode": c.mode, "rate": c.rate, "scale": c.scale, "seed": c.seed,
                              "input": str(src.path), "protocol": "YangRui2015/RIQL attack.py",
                              "transitions": int(len(transitions)), "corrupted_transitions": int(len(chosen))}
    new: dict[str, np.ndarray] = {}
    if c.kind in ("obs", "dynamics"):
        keys = list(c.keys or spec.low_dim_keys)
        unknown = [k for k in keys if k not in spec.obs or spec.obs[k].is_image]
        if unknown:
            raise ConfigError(f"configs/{CONFIG}.yaml: key 'keys': expected low-dimensional observation keys of "
                              f"{src.path} {list(spec.low_dim_keys)}, found {unknown}")
        values = {k: src.read(f"obs/{k}") for k in keys}
        std = {k: v.std(0, dtype=np.float64).astype(np.float32) for k, v in values.items()}
        if c.mode == "random":
            for k in keys:
                values[k][changed] += cr.random_offsets((len(changed), values[k].shape[1]), c.scale, std[k], rng)
        else:
            attack_observations(src, c, keys, values, std, chosen, changed, record)
        new.update({f"obs/{k}": v for k, v in values.items()})
        record.update(keys=keys, std={k: v.tolist() for k, v in std.items()})
        affected = np.union1d(changed, changed - 1)
        record["transitions_with_corrupted_obs_or_next_obs"] = int(np.isin(transitions, affected).sum())
    elif c.kind == "action":
        action = src.read("action")
        std = action.std(0, dtype=np.float64).astype(np.float32)
        if c.mode == "random":
            action[chosen] += cr.random_offsets((len(chosen), action.shape[1]), c.scale, std, rng)
        else:
            attack_action_rows(src, c, action, std, chosen, record)
        new["action"] = action
        record["std"] = std.tolist()
    else:
        source = c.reward or src.default_reward_source()
        reward = src.reward(source)
        reward[chosen] = (cr.random_rewards(len(chosen), c.scale, rng) if c.mode == "random"
                          else cr.adversarial_rewards(reward[chosen], c.scale))
        new[f"reward/{source}"] = reward
        record["reward_source"] = source
    flags = np.zeros(src.n_steps, dtype=bool)
    flags[chosen] = True
    if FLAG in src.extra_keys:
        flags |= src.read(FLAG).astype(bool)
    new[FLAG] = flags
    record["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_corrupted(src, out, c, new, record)
    log.info("%s: %s %s corruption of %d/%d transitions", out, c.mode, c.kind, len(chosen), len(transitions))
    return out


def attack_observations(src: EpisodeStore, c: CorruptConfig, keys: list[str], values: dict[str, np.ndarray],
                        std: dict[str, np.ndarray], chosen: np.ndarray, changed: np.ndarray,
                        record: dict[str, Any]) -> None:
    """Adversarial obs (stored action scored) or next-obs (actor re-chooses) offsets, added to ``values``."""
    device = resolve_device(c.device)
    critic = Critic(c.attack.critic, src, device)
    obs_all = {k: values[k] if k in values else src.read(f"obs/{k}") for k in {*critic.obs_keys, *keys}}
    action_all = src.read("action")
    std_t = {k: torch.from_numpy(v).to(device) for k, v in std.items()}
    generator = torch.Generator(device).manual_seed(c.seed)
    policy = critic.policy if c.kind == "dynamics" else None
    q_before, q_after = [], []
    for rows, act_rows in zip(in_chunks(changed, c.attack.chunk_rows), in_chunks(chosen, c.attack.chunk_rows)):
        obs = {k: torch.from_numpy(v[rows]).to(device) for k, v in obs_all.items()}
        action = torch.from_numpy(action_all[act_rows]).to(device)
        offsets = cr.attack_observations(obs, action, keys, std_t, critic.q, policy, scale=c.scale,
                                         steps=c.attack.steps, step_size=c.attack.step_size, generator=generator)
        with torch.no_grad():
            noised = {k: v + offsets[k] if k in offsets else v for k, v in obs.items()}
            q_before.append(critic.q(obs, policy(obs) if policy else action))
            q_after.append(critic.q(noised, policy(noised) if policy else action))
        for k in keys:
            values[k][rows] += offsets[k].cpu().numpy()
    record["attack"] = {**critic.info, **asdict(c.attack), "q_mean_before": float(torch.cat(q_before).mean()),
                        "q_mean_after": float(torch.cat(q_after).mean())}


def attack_action_rows(src: EpisodeStore, c: CorruptConfig, action: np.ndarray, std: np.ndarray,
                       chosen: np.ndarray, record: dict[str, Any]) -> None:
    """Adversarial action offsets minimising the critic's Q, added to ``action`` in place."""
    device = resolve_device(c.device)
    critic = Critic(c.attack.critic, src, device)
    obs_all = {k: src.read(f"obs/{k}") for k in critic.obs_keys}
    std_t = torch.from_numpy(std).to(device)
    generator = torch.Generator(device).manual_seed(c.seed)
    q_before, q_after = [], []
    for rows in in_chunks(chosen, c.attack.chunk_rows):
        obs = {k: torch.from_numpy(v[rows]).to(device) for k, v in obs_all.items()}
        a = torch.from_numpy(action[rows]).to(device)
        offsets = cr.attack_actions(obs, a, std_t, critic.q, scale=c.scale, steps=c.attack.steps,
                                    step_size=c.attack.step_size, generator=generator)
        with torch.no_grad():
            q_before.append(critic.q(obs, a))
            q_after.append(critic.q(obs, a + offsets))
        action[rows] += offsets.cpu().numpy()
    record["attack"] = {**critic.info, **asdict(c.attack), "q_mean_before": float(torch.cat(q_before).mean()),
                        "q_mean_after": float(torch.cat(q_after).mean())}


def write_corrupted(src: EpisodeStore, out: Path, c: CorruptConfig, new: dict[str, np.ndarray],
                    record: dict[str, Any]) -> None:
    """Copy ``src`` to ``out`` with the arrays of ``new`` (full-length, by data path) replacing its own."""
    starts = src.episode_starts

    def replace(ep: Episode) -> Episode:
        lo, hi = int(starts[ep.index]), int(starts[ep.index]) + len(ep)
        for name, values in new.items():
            if name.startswith("obs/"):
                ep.obs[name[4:]] = values[lo:hi]
            elif name.startswith("reward/"):
                ep.reward[name[7:]] = values[lo:hi]
            elif name == "action":
                ep.action = values[lo:hi]
            else:
                ep.extras[name] = values[lo:hi]
        return ep

    source = f"{src.path} with {c.mode} {c.kind} corruption (rate {c.rate}, scale {c.scale}, seed {c.seed})"
    with staged_store(out, src.spec, source=source, overwrite=c.overwrite, options=src.options) as dst:
        with bulk_writer(dst) as writer:
            copy_episodes(src, range(src.n_episodes), writer, src.reward_sources, transform=replace)
        for name in src.reward_sources:
            prov = src.reward_provenance(name)
            if name == record.get("reward_source"):
                prov = {**prov, "corruption": record}
            if prov:
                dst.set_reward_provenance(name, prov)
        dst.root.attrs["corruption"] = [*src.attrs.get("corruption", []), record]


def run(cfg: Any) -> int:
    """CLI entry: corrupt ``path`` into ``out``."""
    c = load_config(CorruptConfig, cfg, CONFIG)
    out = corrupt_store(c)
    with EpisodeStore.open(out) as store:
        rec = store.attrs["corruption"][-1]
        console().print(f"[green]wrote[/green] {out}: {c.mode} {c.kind} corruption of {rec['corrupted_transitions']} "
                        f"of {rec['transitions']} transitions (rate {c.rate}, scale {c.scale}, seed {c.seed})")
    return 0
