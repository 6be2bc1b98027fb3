"""Dataset quality measures TQ and SACo (Schweighofer et al., "A Dataset Perspective on Offline
Reinforcement Learning", CoLLAs 2022; official code: github.com/ml-jku/OfflineRL).

TQ (trajectory quality) measures exploitation: the average undiscounted episode return of the dataset,
normalised between a worst and a best return::

    TQ = (mean_return - R_min) / (R_max - R_min)

The paper uses a random policy's return as R_min and an online-trained expert's as R_max; here they are
the task's ``reference_returns`` (random / expert). The official code sums rewards without discounting
(``Evaluator.get_returns``, ``d4rl_results/main_2.ipynb``), and so do we.

SACo (state-action coverage) measures exploration: the number of unique discretised (state, action)
pairs of the dataset divided by that of a reference dataset::

    SACo = u_sa(D) / u_sa(D_ref)

Discretisation follows the official code: every axis of the concatenated (state, action) vector is
binned with ``np.digitize(x, np.linspace(lo, hi, num=grid_points))``, where ``lo``/``hi`` are that
axis's min/max over the *reference* dataset, so both datasets share one grid (``ex_05.py`` takes the
limits from the replay dataset; ``d4rl_results/main_2.ipynb`` does the same with ``num=5`` for the
continuous D4RL tasks, ``num=100`` is used for the paper's low-dimensional tasks). The paper counts
unique pairs with HyperLogLog (1% error); we count exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robot_learning.data.store import EpisodeStore, StoreError

#: Grid points per axis for continuous control, as in the paper's D4RL analysis (main_2.ipynb).
DEFAULT_GRID_POINTS = 5


def episode_returns(reward: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """Undiscounted return of every episode (float64); NaN for an episode with an unlabelled (NaN) step."""
    ends = np.asarray(episode_ends, dtype=np.int64)
    if len(ends) == 0:
        return np.zeros(0)
    starts = np.concatenate([[0], ends[:-1]])
    return np.add.reduceat(np.asarray(reward[: ends[-1]], dtype=np.float64), starts)


def trajectory_quality(returns: np.ndarray, low: float, high: float) -> float:
    """TQ: the mean of ``returns`` mapped so that ``low`` -> 0 and ``high`` -> 1 (not clipped)."""
    if high == low:
        raise ValueError(f"TQ normaliser: expected distinct low and high returns, found both {low}")
    return float((np.mean(returns) - low) / (high - low))


@dataclass(frozen=True)
class Grid:
    """Per-axis discretisation: ``np.digitize`` against ``np.linspace(low, high, points)``."""

    low: np.ndarray
    high: np.ndarray
    points: int

    @classmethod
    def spanning(cls, x: np.ndarray, points: int) -> Grid:
        """The grid whose limits are the per-axis min/max of ``x`` (N, D)."""
        if points < 2:
            raise ValueError(f"grid points: expected at least 2, found {points}")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"grid data: expected a non-empty (N, D) array, found shape {x.shape}")
        return cls(np.nanmin(x, axis=0), np.nanmax(x, axis=0), points)

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Bin index of every value of ``x`` (N, D): 0 below ``low``, ``points`` at or above ``high``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.low):
            raise ValueError(f"grid data: expected shape (N, {len(self.low)}), found {x.shape}")
        out = np.empty(x.shape, dtype=np.int16 if self.points < 32767 else np.int32)
        for axis in range(x.shape[1]):
            out[:, axis] = np.digitize(x[:, axis], np.linspace(self.low[axis], self.high[axis], self.points))
        return out


def unique_rows(codes: np.ndarray) -> int:
    """Number of distinct rows of an integer (N, D) array."""
    codes = np.ascontiguousarray(codes)
    if len(codes) == 0:
        return 0
    rows = codes.view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1]))).ravel()
    return len(np.unique(rows))


@dataclass(frozen=True)
class Coverage:
    """SACo and the counts behind it; ``normaliser`` says what ``unique`` was divided by."""

    saco: float
    unique: int
    denominator: int
    normaliser: str
    grid_points: int


def state_action_coverage(pairs: np.ndarray, reference: np.ndarray | None = None,
                          grid_points: int = DEFAULT_GRID_POINTS) -> Coverage:
    """SACo of (state, action) rows ``pairs`` (N, D).

    With ``reference`` (M, D) the grid spans the reference and SACo = u(pairs) / u(reference), the
    paper's definition. Without one, the grid spans ``pairs`` itself and SACo = u(pairs) / N: the fraction
    of steps whose discretised pair occurs for the first time (1.0: no step repeats a visited cell).
    """
    pairs = np.asarray(pairs)
    if reference is not None:
        grid = Grid.spanning(reference, grid_points)
        unique, ref_unique = unique_rows(grid.codes(pairs)), unique_rows(grid.codes(reference))
        return Coverage(unique / ref_unique, unique, ref_unique,
                        "unique pairs of the reference dataset (shared grid spanning the reference)", grid_points)
    grid = Grid.spanning(pairs, grid_points)
    unique = unique_rows(grid.codes(pairs))
    return Coverage(unique / len(pairs), unique, len(pairs),
                    "steps of this dataset (no reference given): the fraction of steps with a unique pair", grid_points)


def state_action_pairs(store: EpisodeStore, state_keys: Sequence[str] | None = None) -> np.ndarray:
    """Every committed step's state (the low-dim observation keys, concatenated) and action, (N, D)."""
    keys = list(state_keys) if state_keys is not None else list(store.spec.low_dim_keys)
    bad = [k for k in keys if k not in store.spec.low_dim_keys]
    if bad:
        raise StoreError(f"{store.path}: state key '{bad[0]}': expected one of the low-dim observation keys "
                         f"{list(store.spec.low_dim_keys)}, found no such key")
    parts = [store.read(f"obs/{k}") for k in keys] + [store.read("action")]
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)


@dataclass(frozen=True)
class Quality:
    """TQ and SACo of one store, each with what it was normalised by (``None``: not computable)."""

    reward_source: str | None
    mean_return: float | None
    labelled_episodes: int
    tq: float | None
    tq_normaliser: str
    coverage: Coverage | None

    def to_dict(self) -> dict:
        cov = self.coverage
        return {
            "reward_source": self.reward_source,
            "mean_return": self.mean_return,
            "labelled_episodes": self.labelled_episodes,
            "tq": self.tq,
            "tq_normaliser": self.tq_normaliser,
            "saco": None if cov is None else cov.saco,
            "unique_state_action_pairs": None if cov is None else cov.unique,
            "saco_denominator": None if cov is None else cov.denominator,
            "saco_normaliser": "no steps" if cov is None else cov.normaliser,
            "saco_grid_points": None if cov is None else cov.grid_points,
        }


def _labelled_returns(store: EpisodeStore, source: str) -> np.ndarray:
    returns = episode_returns(store.reward(source), store.episode_ends)
    return returns[np.isfinite(returns)]


def measure(store: EpisodeStore, reward_source: str | None = None, reference: EpisodeStore | None = None,
            state_keys: Sequence[str] | None = None, grid_points: int = DEFAULT_GRID_POINTS) -> Quality:
    """TQ and SACo of ``store``.

    TQ uses ``reward_source`` (default: the task's default source) over the fully labelled episodes and
    the task's ``reference_returns``; a task without them is normalised by the lowest and highest episode
    return observed in this store and ``reference`` (the paper's "worst and best behaviour observed").
    SACo is normalised by ``reference`` when given (same task interface required), else by this store's
    step count (see :func:`state_action_coverage`).
    """
    if reference is not None:
        diffs = store.spec.differences(reference.spec)
        if diffs:
            raise StoreError(f"{reference.path}: reference store: expected the task interface of {store.path}, "
                             "found: " + "; ".join(diffs))
    source = reward_source or (store.default_reward_source() if store.reward_sources else None)
    returns = _labelled_returns(store, source) if source is not None and store.n_episodes else np.zeros(0)
    mean = float(np.mean(returns)) if len(returns) else None
    tq, how = None, "no reward source" if source is None else "no fully labelled episodes"
    refs = store.spec.reference_returns
    if len(returns) and refs:
        tq = trajectory_quality(returns, refs["random"], refs["expert"])
        how = (f"reference_returns of task '{store.spec.name}': random {refs['random']:g} -> 0, "
               f"expert {refs['expert']:g} -> 1")
    elif len(returns):
        pool = returns
        if reference is not None and source in reference.reward_sources and reference.n_episodes:
            pool = np.concatenate([returns, _labelled_returns(reference, source)])
        where = "this store" + (" and the reference" if pool is not returns else "")
        if pool.max() > pool.min():
            tq = trajectory_quality(returns, float(pool.min()), float(pool.max()))
            how = (f"task has no reference_returns: lowest ({pool.min():g}) and highest ({pool.max():g}) episode "
                   f"return observed in {where}")
        else:
            how = f"task has no reference_returns and every episode return in {where} is {pool.min():g}"
    coverage = None
    if store.n_steps:
        pairs = state_action_pairs(store, state_keys)
        ref_pairs = state_action_pairs(reference, state_keys) if reference is not None and reference.n_steps else None
        coverage = state_action_coverage(pairs, ref_pairs, grid_points)
    return Quality(source, mean, len(returns), tq, how, coverage)
