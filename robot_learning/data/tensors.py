"""Committed store data as contiguous torch tensors on the training device, and sampling from it.

Loading copies each array once (``from_store``); sampling is index arithmetic on the device, never
per-sample Python: a batch of transitions is ``obs[i]``, ``action[i]``, ``reward[i]``, ``obs[i + 1]``;
a segment is ``i[:, None] + arange(L)``. The last step of an episode that ended without a true terminal
(a time limit or an operator stop) has no next observation in the store, so it is not a transition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from robot_learning.data.store import EpisodeStore, StoreError


@dataclass
class Batch:
    """A batch of transitions (s, a, r, s', done); ``done`` is 1.0 on true terminals only.

    ``mc_return`` (discounted return-to-go, Cal-QL), ``weight`` (per-sample importance) and ``online`` (bool per
    row: True where the row comes from the online buffer, False for offline data; set by the runtime's
    MixedSampler, read by learners that treat the two sources differently, e.g. H2O's real/sim rows) are optional.
    """

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    done: torch.Tensor
    mc_return: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    online: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        def move(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v.to(device, non_blocking=non_blocking) for k, v in x.items()}
            return x.to(device, non_blocking=non_blocking)

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    @staticmethod
    def cat(batches: Sequence[Batch]) -> Batch:
        """Concatenate batches along the batch axis (optional fields must be present in all or none)."""
        def join(values):
            if values[0] is None:
                return None
            if isinstance(values[0], dict):
                return {k: torch.cat([v[k] for v in values]) for k in values[0]}
            return torch.cat(values)

        return Batch(**{f.name: join([getattr(b, f.name) for b in batches]) for f in fields(Batch)})

    def replace(self, **changes) -> Batch:
        return replace(self, **changes)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def discounted_return_to_go(reward: np.ndarray, episode_ends: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_k gamma^k r_{t+k} within each episode (float64 accumulation, float32 result)."""
    from scipy.signal import lfilter

    out = np.empty(len(reward), dtype=np.float32)
    start = 0
    for end in episode_ends:
        r = np.asarray(reward[start:end], dtype=np.float64)
        out[start:end] = lfilter([1.0], [1.0, -gamma], r[::-1])[::-1]
        start = int(end)
    return out


class TransitionData:
    """Every committed step of a store (or of selected episodes) resident on one device.

    Attributes are (N, ...) tensors: ``obs[key]`` (images stay uint8), ``action`` float32, ``reward``
    float32, ``terminal`` bool; ``episode_ends`` (E,) int64 in this object's row numbering;
    ``valid`` holds the row indices that are transitions (they have a next observation or are terminal).
    """

    def __init__(self, obs: Mapping[str, torch.Tensor], action: torch.Tensor, reward: torch.Tensor,
                 terminal: torch.Tensor, episode_ends: torch.Tensor, source: str = "<tensors>"):
        self.obs = dict(obs)
        self.action = action
        self.reward = reward
        self.terminal = terminal
        self.episode_ends = episode_ends
        self.source = source
        self.device = action.device
        n = action.shape[0]
        starts = torch.cat([episode_ends.new_zeros(1), episode_ends[:-1]])
        lengths = episode_ends - starts
        self.episode_id = torch.repeat_interleave(torch.arange(len(episode_ends), device=self.device), lengths)
        self.episode_end_of_row = episode_ends[self.episode_id]
        rows = torch.arange(n, device=self.device)
        self.has_next = rows + 1 < self.episode_end_of_row
        self.valid = torch.nonzero(self.has_next | terminal, as_tuple=False).squeeze(1)
        self.mc_return: torch.Tensor | None = None

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, store: EpisodeStore, obs_keys: Sequence[str] | None = None, reward_source: str | None = None,
                   device: str | torch.device = "auto", episodes: Sequence[int] | None = None) -> TransitionData:
        """Copy the committed data of ``store`` (all or ``episodes``) onto ``device`` once.

        Rewards must be labelled for every loaded step: NaN (an unlabelled step) is an error naming the episodes.
        """
        device = resolve_device(device)
        keys = list(obs_keys) if obs_keys is not None else list(store.spec.obs_keys)
        unknown = [k for k in keys if k not in store.spec.obs]
        if unknown:
            raise StoreError(f"{store.path}: observation key '{unknown[0]}': expected one of {list(store.spec.obs_keys)}, "
                             "found no such key")
        if store.n_episodes == 0:
            raise StoreError(f"{store.path}: expected at least one committed episode, found none")
        source = reward_source or store.default_reward_source()
        ends = store.episode_ends
        if episodes is None:
            selected = np.arange(store.n_episodes)
        else:
            selected = np.asarray(episodes, dtype=np.int64)
            if selected.size == 0 or selected.min() < 0 or selected.max() >= store.n_episodes:
                raise StoreError(f"{store.path}: episodes: expected indices in [0, {store.n_episodes}), found {selected.tolist()[:10]}")
        starts = np.concatenate([[0], ends[:-1]])
        contiguous = len(selected) == store.n_episodes

        def load(name: str) -> np.ndarray:
            if contiguous:
                return store.read(name)
            return np.concatenate([store.read(name, int(starts[e]), int(ends[e])) for e in selected])

        reward = load(f"reward/{source}") if source in store.reward_sources else None
        if reward is None:
            raise StoreError(f"{store.path}: reward source '{source}': expected one of {store.reward_sources}, found none")
        missing = np.isnan(reward)
        if missing.any():
            ep_of_row = np.repeat(selected, ends[selected] - starts[selected])
            bad = np.unique(ep_of_row[missing])
            raise StoreError(f"{store.path}: reward source '{source}': expected a label for every step, found "
                             f"{int(missing.sum())} unlabelled step(s) in episode(s) {bad[:10].tolist()}; relabel them "
                             "(robot-learning reward relabel) or choose another source")
        to = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(device)  # noqa: E731
        lengths = ends[selected] - starts[selected]
        data = cls(
            obs={k: to(load(f"obs/{k}")) for k in keys},
            action=to(load("action")),
            reward=to(reward.astype(np.float32)),
            terminal=to(load("terminal").astype(bool)),
            episode_ends=to(np.cumsum(lengths).astype(np.int64)),
            source=f"{store.path} [{source}]",
        )
        return data

    # ------------------------------------------------------------------------------ views
    @property
    def n_steps(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_transitions(self) -> int:
        return int(self.valid.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode, (E,) float32."""
        sums = torch.zeros(self.n_episodes, device=self.device, dtype=torch.float64)
        sums.index_add_(0, self.episode_id, self.reward.double())
        return sums.float()

    def with_reward(self, reward: torch.Tensor) -> TransitionData:
        """The same data with a transformed reward (an algorithm's scale/shift); tensors are shared."""
        if reward.shape != self.reward.shape:
            raise ValueError(f"reward: expected shape {tuple(self.reward.shape)}, found {tuple(reward.shape)}")
        return TransitionData(self.obs, self.action, reward, self.terminal, self.episode_ends, self.source)

    def discounted_returns(self, gamma: float) -> torch.Tensor:
        """The discounted return-to-go of every row within its episode, (N,) on this data's device."""
        g = discounted_return_to_go(self.reward.cpu().numpy(), self.episode_ends.cpu().numpy(), gamma)
        return torch.from_numpy(g).to(self.device)

    def compute_mc_returns(self, gamma: float) -> torch.Tensor:
        """Cache and return the discounted return-to-go of every row (Cal-QL's Monte-Carlo bound)."""
        self.mc_return = self.discounted_returns(gamma)
        return self.mc_return

    # ------------------------------------------------------------------------------ sampling
    def transitions(self, index: torch.Tensor) -> Batch:
        """Transitions at row ``index`` (rows from ``valid``); the next row of a terminal is never read as data."""
        nxt = torch.where(self.has_next[index], index + 1, index)
        return Batch(
            obs={k: v[index] for k, v in self.obs.items()},
            action=self.action[index],
            reward=self.reward[index],
            next_obs={k: v[nxt] for k, v in self.obs.items()},
            done=self.terminal[index].float(),
            mc_return=None if self.mc_return is None else self.mc_return[index],
        )

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniform batch of transitions."""
        pick = torch.randint(self.n_transitions, (batch_size,), device=self.device, generator=generator)
        return self.transitions(self.valid[pick])

    def segment_starts(self, length: int) -> torch.Tensor:
        """Rows from which a ``length``-step segment stays inside its episode."""
        rows = torch.arange(self.n_steps, device=self.device)
        return torch.nonzero(rows + length <= self.episode_end_of_row, as_tuple=False).squeeze(1)

    def segments(self, start: torch.Tensor, length: int) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Fixed-length segments: every field gains a time axis, shape (B, length, ...)."""
        idx = start[:, None] + torch.arange(length, device=self.device)
        return {
            "obs": {k: v[idx] for k, v in self.obs.items()},
            "action": self.action[idx],
            "reward": self.reward[idx],
            "terminal": self.terminal[idx],
            "episode_id": self.episode_id[start],
        }

    def sample_segments(self, batch_size: int, length: int, generator: torch.Generator | None = None):
        """A uniform batch of ``length``-step segments (see :meth:`segments`)."""
        starts = self.segment_starts(length)
        if len(starts) == 0:
            raise StoreError(f"{self.source}: segment length {length}: expected episodes at least that long, found none")
        pick = torch.randint(len(starts), (batch_size,), device=self.device, generator=generator)
        return self.segments(starts[pick], length)
