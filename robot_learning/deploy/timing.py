"""Timing of a control loop: inference latency and loop-period jitter, cheap enough for the hot path.

A policy loop at 200 Hz has 5 ms per tick, so its bookkeeping must not allocate or sort: a
:class:`Histogram` adds a duration in O(1) (one log and one increment into log-spaced bins, about 1.2%
wide) and reads percentiles from the bin counts, so a status report over a whole run never stalls a
tick. :class:`LoopStats` turns tick times into periods, jitter (|period - nominal|) and the ticks whose
own work took longer than the period (over budget).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

#: Bin layout: 200 bins per decade from 100 ns to 100 s (relative bin width 10**(1/200) - 1 = 1.16%).
BINS_PER_DECADE = 200
LOWEST_S = 1e-7
DECADES = 9


class Histogram:
    """Streaming distribution of non-negative durations in seconds."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS_PER_DECADE * DECADES + 2, dtype=np.int64)  # [underflow, bins..., overflow]
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if seconds < LOWEST_S:
            index = 0
        else:
            index = min(int(math.log10(seconds / LOWEST_S) * BINS_PER_DECADE) + 1, len(self.counts) - 1)
        self.counts[index] += 1
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in seconds (bin centre, geometric), None when empty."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.n))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return 0.0
        if index == len(self.counts) - 1:
            return self.max
        return min(LOWEST_S * 10 ** ((index - 0.5) / BINS_PER_DECADE), self.max)

    def state(self) -> dict[str, Any]:
        """The distribution, sparse (non-empty bins only): what status topics carry so a monitor can take
        percentiles over any window (:meth:`since`)."""
        bins = np.flatnonzero(self.counts)
        return {"bins": bins.tolist(), "counts": self.counts[bins].tolist(), "total": self.total, "max": self.max}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Histogram:
        h = cls()
        h.counts[np.asarray(state["bins"], dtype=np.int64)] = np.asarray(state["counts"], dtype=np.int64)
        h.n, h.total, h.max = int(h.counts.sum()), float(state["total"]), float(state["max"])
        return h

    def since(self, earlier: Histogram) -> Histogram:
        """The samples added after ``earlier`` (a previous state of this histogram); ``max`` stays the overall one."""
        h = Histogram()
        h.counts = self.counts - earlier.counts
        h.n, h.total, h.max = int(h.counts.sum()), self.total - earlier.total, self.max
        return h

    def summary_ms(self) -> dict[str, Any]:
        """n, p50, p99, mean and max in milliseconds (None when empty): the numbers status topics report."""
        if not self.n:
            return {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
        return {"n": self.n, "p50": _ms(self.percentile(50)), "p99": _ms(self.percentile(99)),
                "mean": _ms(self.total / self.n), "max": _ms(self.max)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


class LoopStats:
    """Tick-to-tick periods, their jitter around ``period_s`` and over-budget ticks of a control loop."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.period = Histogram()
        self.jitter = Histogram()
        self.busy = Histogram()
        self.over_budget = 0
        self._last: float | None = None

    def tick(self, start_s: float) -> None:
        """Account a tick that started at ``start_s`` (a monotonic clock, seconds)."""
        if self._last is not None:
            interval = start_s - self._last
            self.period.add(interval)
            self.jitter.add(abs(interval - self.period_s))
        self._last = start_s

    def done(self, start_s: float, end_s: float) -> None:
        """Account the work of the tick that started at ``start_s``."""
        busy = end_s - start_s
        self.busy.add(busy)
        if busy > self.period_s:
            self.over_budget += 1

    def restart(self) -> None:
        """Forget the previous tick (after a pause the next interval is not a loop period)."""
        self._last = None

    def histograms(self) -> dict[str, Histogram]:
        return {"period": self.period, "jitter": self.jitter, "busy": self.busy}

    def summary(self) -> dict[str, Any]:
        return {"nominal_period_ms": round(self.period_s * 1e3, 4), "period_ms": self.period.summary_ms(),
                "jitter_ms": self.jitter.summary_ms(), "busy_ms": self.busy.summary_ms(),
                "over_budget": self.over_budget}


class Pacer:
    """Absolute-deadline pacing of a loop at ``period_s``: :meth:`wait` sleeps until the next tick.

    Deadlines advance by whole periods from the first tick, so a late tick does not shift the ones after it;
    after an overrun longer than a period the schedule restarts from now instead of bursting to catch up.
    """

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._next: float | None = None

    def wait(self) -> float:
        """Sleep until the next deadline; returns the tick's start (``time.perf_counter()``)."""
        if self._next is not None:
            delay = self._next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        start = time.perf_counter()
        self._next = start + self.period_s if self._next is None or start - self._next > self.period_s \
            else self._next + self.period_s
        return start

    def restart(self) -> None:
        self._next = None


def realtime_scheduling(priority: int) -> str:
    """Move every thread of this process to SCHED_FIFO at ``priority`` (1-99), as robot control loops run
    (ros2_control's controller manager: FIFO 50), so other load on the machine cannot delay a tick.

    Returns "" on success, else why not (no CAP_SYS_NICE, not Linux): the caller warns and runs on.
    DDS receive threads are included, so observations are not delayed either.
    """
    import os

    if not 1 <= priority <= 99:
        return f"priority: expected 1..99, found {priority}"
    if not hasattr(os, "sched_setscheduler"):
        return "SCHED_FIFO: not available on this platform"
    try:
        for tid in os.listdir("/proc/self/task"):
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, ValueError) as e:
        return f"SCHED_FIFO priority {priority}: {e.strerror if isinstance(e, OSError) else e} (needs CAP_SYS_NICE)"
    return ""
