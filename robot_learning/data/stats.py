"""Per-key statistics of an episode store, kept up to date as episodes are committed.

Exact running moments (count, sum, sum of squares, min, max) merge across episodes; quantiles come
from a fixed-size reservoir sample per key (Algorithm R with a RNG keyed on the global step index, so
the same store always yields the same numbers). Images contribute a fixed grid of pixels per frame and
are summarised per channel. The accumulators live in the store (``meta/stats``) so appending from
another process continues them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Quantiles reported for every key (LeRobot's stats.json reports the same set).
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
#: Samples kept per key for the quantile estimates.
RESERVOIR_SIZE = 4096
#: Pixels sampled per image frame: an evenly spaced grid of this many rows and columns.
IMAGE_GRID = 8


def image_pixel_sample(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T * IMAGE_GRID**2, 3) float64 pixel values on a fixed grid."""
    t, h, w, c = frames.shape
    rows = np.linspace(0, h - 1, IMAGE_GRID).astype(int)
    cols = np.linspace(0, w - 1, IMAGE_GRID).astype(int)
    return frames[:, rows][:, :, cols].reshape(-1, c).astype(np.float64)


@dataclass
class Moments:
    """Mergeable count / sum / sum-of-squares / min / max of a (n, d) stream, NaN-aware."""

    count: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(np.zeros(dim), np.zeros(dim), np.zeros(dim), np.full(dim, np.inf), np.full(dim, -np.inf))

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        z = np.where(finite, x, 0.0)
        return cls(finite.sum(0).astype(np.float64), z.sum(0), (z * z).sum(0),
                   np.where(finite, x, np.inf).min(0), np.where(finite, x, -np.inf).max(0))

    def merged(self, other: Moments) -> Moments:
        return Moments(self.count + other.count, self.total + other.total, self.total_sq + other.total_sq,
                       np.minimum(self.minimum, other.minimum), np.maximum(self.maximum, other.maximum))

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.maximum(self.count, 1.0)
        mean = self.total / n
        var = np.maximum(self.total_sq / n - mean * mean, 0.0)
        return mean, np.sqrt(var)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("count", "total", "total_sq", "minimum", "maximum")}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Moments:
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("count", "total", "total_sq", "minimum", "maximum")))


def reservoir_update(reservoir: np.ndarray, seen: int, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Algorithm R over rows of ``x`` (NaN rows are skipped); deterministic given ``seen``.

    ``reservoir`` has shape (RESERVOIR_SIZE, d) and holds ``min(seen, RESERVOIR_SIZE)`` valid rows.
    """
    x = np.asarray(x, dtype=np.float32)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) == 0:
        return reservoir, seen
    out = reservoir.copy()
    size = out.shape[0]
    fill = max(0, min(size - seen, len(x)))
    out[seen:seen + fill] = x[:fill]
    rest = x[fill:]
    if len(rest):
        index = seen + fill + np.arange(len(rest))  # global position of each remaining row
        rng = np.random.default_rng(seen + fill)
        slot = (rng.random(len(rest)) * (index + 1)).astype(np.int64)
        keep = slot < size
        out[slot[keep]] = rest[keep]
    return out, seen + len(x)


def summarize(moments: Moments, reservoir: np.ndarray, seen: int) -> dict[str, list[float] | int]:
    """The public statistics of one key: count, mean, std, min, max and the QUANTILES."""
    mean, std = moments.mean_std()
    valid = reservoir[: min(seen, len(reservoir))]
    out: dict[str, list[float] | int] = {
        "count": int(moments.count.max()) if moments.count.size else 0,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "min": np.where(np.isfinite(moments.minimum), moments.minimum, np.nan).tolist(),
        "max": np.where(np.isfinite(moments.maximum), moments.maximum, np.nan).tolist(),
    }
    qs = np.quantile(valid, QUANTILES, axis=0) if len(valid) else np.full((len(QUANTILES), reservoir.shape[1]), np.nan)
    for q, row in zip(QUANTILES, qs):
        out[f"q{int(round(q * 100)):02d}"] = np.asarray(row).tolist()
    return out


def stat_rows(name: str, values: np.ndarray) -> np.ndarray:
    """The (n, d) rows a data array contributes to its statistics (images: sampled pixels)."""
    values = np.asarray(values)
    if values.dtype == np.uint8 and values.ndim == 4:
        return image_pixel_sample(values)
    if values.ndim == 1:
        return values.reshape(-1, 1).astype(np.float64)
    return values.reshape(len(values), -1).astype(np.float64)
