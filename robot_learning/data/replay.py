"""Online transitions on the training device, and the sampler that mixes them with offline data.

:class:`ReplayBuffer` is a FIFO of transitions collected from a vector env: dict observations (images
stay uint8), actions in task units, the raw environment reward, the next observation and the true
terminal flag (a time-limit truncation is not a terminal). Rows are written in batches, one per vector
step, with index arithmetic on the device; sampling returns a :class:`~robot_learning.data.tensors.Batch`
with the learner's reward transform applied, so the stored rewards stay raw.

When the learner wants Monte-Carlo returns (Cal-QL's calibration bound: the official code computes
true discounted returns-to-go for online trajectories; CORL's port stores 0.0, a known discrepancy),
the buffer stages each sub-environment's episode and commits it whole when it ends, with the returns
``mc_returns`` computes from the episode's transformed rewards (the learner's own function, so
online episodes get the same treatment as the dataset, e.g. Cal-QL's all-failure rule), as the
official code adds whole trajectories. Otherwise every transition is sampleable as soon as it is
added (IQL, CORL).

``weight_fn`` is the hook for non-uniform sampling (trajectory re-weighting, Hong et al. 2023): a
function of the buffer returning one non-negative weight per stored row, re-evaluated after each add.

:class:`MixedSampler` draws each batch from offline :class:`TransitionData` and the online buffer
according to the offline-to-online protocol (algorithms.md section 11):

- ``mixed``: separate buffers, a fixed fraction of online rows per batch, optionally annealed over
  online steps (Cal-QL: 0.5; d3rlpy ``MixedReplayBuffer``; TorchRL ``OfflineToOnlineReplayBuffer``);
- ``shared``: one pool, uniform over offline + online rows (IQL official, FamO2O, CORL IQL);
- ``fresh``: online rows only, the offline data is dropped (RO2O's new FIFO).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from robot_learning.data.tensors import Batch, TransitionData
from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)

#: The ways online data meets offline data (see the module docstring).
BUFFER_MODES = ("mixed", "shared", "fresh")


def sampling_cdf(weights: torch.Tensor) -> torch.Tensor:
    """The cumulative distribution (float64) for drawing rows proportionally to ``weights``."""
    if weights.dim() != 1:
        raise ValueError(f"sample weights: expected one weight per row (a 1-D tensor), "
                         f"found shape {tuple(weights.shape)}")
    return torch.cumsum(weights.double().clamp_min(0.0), 0)


def draw_rows(n: int, batch_size: int, generator: torch.Generator | None, device: torch.device,
              cdf: torch.Tensor | None = None) -> torch.Tensor:
    """``batch_size`` row indices in [0, n): uniform, or proportional to the weights behind ``cdf``."""
    if cdf is None:
        return torch.randint(n, (batch_size,), device=device, generator=generator)
    u = torch.rand(batch_size, device=device, generator=generator, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)


class _Rows:
    """Fixed-capacity columns on one device, addressed by row index (obs/<key>, next_obs/<key>, action, ...).

    Allocated uninitialised: on the CPU the pages of a large buffer cost memory only once rows are written.
    """

    def __init__(self, capacity: int, layout: Mapping[str, tuple[tuple[int, ...], torch.dtype]], device: torch.device):
        self.capacity = capacity
        self.columns = {name: torch.empty((capacity, *shape), dtype=dtype, device=device)
                        for name, (shape, dtype) in layout.items()}

    @property
    def row_bytes(self) -> int:
        return sum(c[0].numel() * c.element_size() for c in self.columns.values())

    def write(self, index: torch.Tensor, values: Mapping[str, torch.Tensor]) -> None:
        for name, column in self.columns.items():
            column[index] = values[name].to(column.dtype)

    def read(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: column[index] for name, column in self.columns.items()}


def _layout(spec: TaskSpec, obs_keys: Sequence[str]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    layout: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for key in obs_keys:
        o = spec.obs[key]
        dtype = torch.uint8 if o.is_image else torch.float32
        layout[f"obs/{key}"] = (o.shape, dtype)
        layout[f"next_obs/{key}"] = (o.shape, dtype)
    layout.update({"action": ((spec.action_dim,), torch.float32), "reward": ((), torch.float32),
                   "terminal": ((), torch.bool), "episode": ((), torch.int64), "mc_return": ((), torch.float32)})
    return layout


class ReplayBuffer:
    """A device-resident FIFO of online transitions from ``num_envs`` sub-environments.

    ``mc_returns`` (finished episodes as TransitionData with transformed rewards -> one return per row)
    enables Monte-Carlo returns: episodes then commit whole (see the module docstring);
    ``reward_transform`` is the learner's ``transform_reward``, applied when sampling and before
    computing returns; ``max_episode_steps`` bounds the staging area of episode commits.
    """

    def __init__(self, spec: TaskSpec, obs_keys: Sequence[str], capacity: int, num_envs: int,
                 device: torch.device | str = "cpu", *,
                 mc_returns: Callable[[TransitionData], torch.Tensor] | None = None,
                 reward_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 max_episode_steps: int | None = None,
                 weight_fn: Callable[[ReplayBuffer], torch.Tensor] | None = None):
        if capacity < 1:
            raise ValueError(f"replay capacity: expected a positive number of transitions, found {capacity}")
        self.spec = spec
        self.obs_keys = list(obs_keys)
        self.capacity = int(capacity)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.mc_returns = mc_returns
        self.reward_transform = reward_transform or (lambda r: r)
        self.weight_fn = weight_fn
        self.episode_commit = mc_returns is not None
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        layout = _layout(spec, self.obs_keys)
        self._fifo = _Rows(self.capacity, layout, self.device)
        log.info("online buffer: %d transitions x %.1f kB = %.2f GB on %s", self.capacity,
                 self._fifo.row_bytes / 1e3, self.capacity * self._fifo.row_bytes / 1e9, self.device)
        self._stage = (_Rows(self.num_envs * self.max_episode_steps, layout, self.device)
                       if self.episode_commit else None)
        self._ptr = 0
        self._size = 0
        self._added = 0
        self._episode_len = np.zeros(self.num_envs, dtype=np.int64)
        self._episode_of_env = np.arange(self.num_envs, dtype=np.int64)
        self._next_episode = self.num_envs
        self._cdf: torch.Tensor | None = None

    # ------------------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """Sampleable transitions (committed, not yet overwritten)."""
        return self._size

    @property
    def added(self) -> int:
        """Transitions ever added (staged ones included)."""
        return self._added

    @property
    def column(self) -> dict[str, torch.Tensor]:
        """The stored rows [0, size) by column name (read-only use: weight functions, tests)."""
        return {name: col[: self._size] for name, col in self._fifo.columns.items()}

    # ------------------------------------------------------------------------------ adding
    def add(self, obs: Mapping[str, torch.Tensor], action: torch.Tensor, reward: Any,
            next_obs: Mapping[str, torch.Tensor], terminal: Any, episode_end: Any,
            env_index: Sequence[int] | np.ndarray | None = None) -> None:
        """Add one transition per row (one vector step); ``episode_end`` = terminal or truncated.

        ``env_index`` names the sub-environment of each row (default: row ``i`` is env ``i``).
        """
        env_index = np.arange(self.num_envs) if env_index is None else np.asarray(env_index, dtype=np.int64)
        ended = np.asarray(episode_end, dtype=bool)
        k = len(env_index)
        if k == 0:
            return
        values = {f"obs/{key}": obs[key] for key in self.obs_keys}
        values.update({f"next_obs/{key}": next_obs[key] for key in self.obs_keys})
        values["action"] = action
        values["reward"] = torch.as_tensor(reward, dtype=torch.float32).to(self.device, non_blocking=True)
        values["terminal"] = torch.as_tensor(terminal, dtype=torch.bool).to(self.device, non_blocking=True)
        values["episode"] = torch.from_numpy(self._episode_of_env[env_index]).to(self.device, non_blocking=True)
        values["mc_return"] = torch.zeros(k, device=self.device)
        self._added += k
        if self.episode_commit:
            if np.any(self._episode_len[env_index] >= self.max_episode_steps):
                raise RuntimeError(f"replay buffer: expected episodes of at most {self.max_episode_steps} steps "
                                   f"(the task's max_episode_steps), found a longer one")
            slots = env_index * self.max_episode_steps + self._episode_len[env_index]
            self._stage.write(torch.from_numpy(slots).to(self.device), values)
        else:
            self._append(values)
        self._episode_len[env_index] += 1
        self.end_episodes(env_index[ended])

    def end_episodes(self, env_index: Sequence[int] | np.ndarray | None = None) -> None:
        """Close the open episodes of ``env_index`` (default: all), e.g. before the envs are reset.

        Sub-environments without a transition in their current episode are left alone. With Monte-Carlo
        returns the staged rows are committed with their returns-to-go.
        """
        env_index = np.arange(self.num_envs) if env_index is None else np.asarray(env_index, dtype=np.int64)
        env_index = env_index[self._episode_len[env_index] > 0]
        if self.episode_commit and len(env_index):
            lengths = self._episode_len[env_index]
            slots = np.concatenate([e * self.max_episode_steps + np.arange(n) for e, n in zip(env_index, lengths)])
            rows = self._stage.read(torch.from_numpy(slots).to(self.device))
            episodes = TransitionData({k: rows[f"obs/{k}"] for k in self.obs_keys}, rows["action"],
                                      self.reward_transform(rows["reward"]), rows["terminal"],
                                      torch.from_numpy(np.cumsum(lengths)).to(self.device), "online episodes")
            rows["mc_return"] = self.mc_returns(episodes).to(torch.float32)
            self._append(rows)
        self._new_episodes(env_index)

    def _new_episodes(self, env_index: np.ndarray) -> None:
        n = len(env_index)
        self._episode_len[env_index] = 0
        self._episode_of_env[env_index] = self._next_episode + np.arange(n)
        self._next_episode += n

    def _append(self, values: Mapping[str, torch.Tensor]) -> None:
        k = int(values["action"].shape[0])
        if k > self.capacity:
            values = {name: v[-self.capacity:] for name, v in values.items()}
            k = self.capacity
        index = (torch.arange(k, device=self.device) + self._ptr) % self.capacity
        self._fifo.write(index, values)
        self._ptr = (self._ptr + k) % self.capacity
        self._size = min(self._size + k, self.capacity)
        self._cdf = None

    # ------------------------------------------------------------------------------ sampling
    def rows(self, index: torch.Tensor) -> Batch:
        """Transitions at stored rows ``index``, rewards through the learner's transform."""
        r = self._fifo.read(index)
        return Batch(
            obs={k: r[f"obs/{k}"] for k in self.obs_keys},
            action=r["action"],
            reward=self.reward_transform(r["reward"]),
            next_obs={k: r[f"next_obs/{k}"] for k in self.obs_keys},
            done=r["terminal"].float(),
            mc_return=r["mc_return"] if self.episode_commit else None,
        )

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A batch of stored transitions: uniform, or by ``weight_fn`` when set."""
        if self._size == 0:
            raise RuntimeError("replay buffer: expected stored transitions to sample, found none "
                               "(collect some first: online warm-up steps)")
        if self.weight_fn is not None and self._cdf is None:
            self._cdf = sampling_cdf(self.weight_fn(self))
        return self.rows(draw_rows(self._size, batch_size, generator, self.device, self._cdf))

    # ------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: stored and staged rows (on the CPU) and counters."""
        state: dict[str, Any] = {
            "capacity": self.capacity, "num_envs": self.num_envs, "ptr": self._ptr, "size": self._size,
            "added": self._added, "episode_len": torch.from_numpy(self._episode_len.copy()),
            "episode_of_env": torch.from_numpy(self._episode_of_env.copy()),
            "next_episode": self._next_episode,
            "fifo": {name: col[: self._size].cpu() for name, col in self._fifo.columns.items()},
        }
        if self._stage is not None:
            state["stage"] = {name: col.cpu() for name, col in self._stage.columns.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, mine in (("capacity", self.capacity), ("num_envs", self.num_envs)):
            if state[key] != mine:
                raise ValueError(f"replay buffer state: expected {key} {mine}, found {state[key]} "
                                 "(resume with the run's own online settings)")
        size = int(state["size"])
        for name, col in self._fifo.columns.items():
            col[:size] = state["fifo"][name].to(self.device)
        if self._stage is not None:
            for name, col in self._stage.columns.items():
                col.copy_(state["stage"][name].to(self.device))
        self._ptr, self._size, self._added = int(state["ptr"]), size, int(state["added"])
        self._episode_len = state["episode_len"].numpy().astype(np.int64)
        self._episode_of_env = state["episode_of_env"].numpy().astype(np.int64)
        self._next_episode = int(state["next_episode"])
        self._cdf = None


class MixedSampler:
    """Draws training batches from offline data and an online buffer by one of :data:`BUFFER_MODES`.

    ``online_ratio`` is the fraction of online rows in a ``mixed`` batch, annealed linearly to
    ``final_online_ratio`` over ``anneal_steps`` online env steps when that is set. Until the online
    buffer holds data, ``mixed`` and ``shared`` batches are all offline. ``offline_weights`` (one per
    offline transition, in ``data.valid`` order) makes offline draws non-uniform.
    """

    def __init__(self, offline: TransitionData | None, online: ReplayBuffer, mode: str = "mixed",
                 online_ratio: float = 0.5, final_online_ratio: float | None = None, anneal_steps: int = 0,
                 offline_weights: torch.Tensor | None = None):
        if mode not in BUFFER_MODES:
            raise ValueError(f"buffer mode: expected one of {list(BUFFER_MODES)}, found {mode!r}")
        if mode != "fresh" and offline is None:
            raise ValueError(f"buffer mode '{mode}': expected offline data to mix with, found none (use mode 'fresh')")
        for name, r in (("online_ratio", online_ratio), ("final_online_ratio", final_online_ratio)):
            if r is not None and not 0.0 <= r <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], found {r}")
        self.offline = None if mode == "fresh" else offline
        self.online = online
        self.mode = mode
        self.online_ratio = online_ratio
        self.final_online_ratio = final_online_ratio
        self.anneal_steps = anneal_steps
        use_weights = offline_weights is not None and self.offline is not None
        self._offline_cdf = sampling_cdf(offline_weights) if use_weights else None
        if self._offline_cdf is not None and len(self._offline_cdf) != self.offline.n_transitions:
            raise ValueError(f"offline weights: expected one per offline transition ({self.offline.n_transitions}), "
                             f"found {len(self._offline_cdf)}")

    def ratio_at(self, online_step: int) -> float:
        """The ``mixed`` mode's online fraction after ``online_step`` env steps (annealed if configured)."""
        if self.final_online_ratio is None or self.anneal_steps <= 0:
            return self.online_ratio
        frac = min(1.0, online_step / self.anneal_steps)
        return self.online_ratio + frac * (self.final_online_ratio - self.online_ratio)

    def online_rows(self, batch_size: int, online_step: int, host_generator: torch.Generator) -> int:
        """How many rows of the next batch come from the online buffer (decided on the host: no device sync)."""
        n_on = self.online.size
        if self.mode == "fresh":
            return batch_size
        if n_on == 0:
            return 0
        if self.mode == "mixed":
            return round(self.ratio_at(online_step) * batch_size)
        p = n_on / (n_on + self.offline.n_transitions)
        return int((torch.rand(batch_size, generator=host_generator) < p).sum())

    def sample(self, batch_size: int, online_step: int, generator: torch.Generator | None,
               host_generator: torch.Generator) -> Batch:
        """One training batch: offline rows first, then online rows; ``Batch.online`` flags the online ones."""
        n_on = self.online_rows(batch_size, online_step, host_generator)
        parts = []
        if n_on < batch_size:
            part = self._offline(batch_size - n_on, generator)
            parts.append(part.replace(online=torch.zeros(len(part), dtype=torch.bool, device=part.action.device)))
        if n_on > 0:
            part = self.online.sample(n_on, generator)
            parts.append(part.replace(online=torch.ones(len(part), dtype=torch.bool, device=part.action.device)))
        return parts[0] if len(parts) == 1 else Batch.cat(parts)

    def _offline(self, n: int, generator: torch.Generator | None) -> Batch:
        data = self.offline
        pick = draw_rows(data.n_transitions, n, generator, data.device, self._offline_cdf)
        return data.transitions(data.valid[pick])
