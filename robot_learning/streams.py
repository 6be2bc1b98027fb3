"""Sampling several timestamped streams at a control rate, by header stamp.

Every consumer of robot streams uses this module: the recorder node and the rosbag2 importer (which
turn streams into episode steps) and controllers such as the scripted teleop and the policy node
(which need one consistent observation). It works on plain integers (nanoseconds) and values, so it
is tested without ROS.

- :class:`StreamBuffer` keeps one stream's recent messages ordered by header stamp; a message that
  arrives out of order is inserted in place, a repeated stamp (a re-sent message) is ignored.
- :class:`StreamSampler` answers "the latest message of every stream at or before time t", marking
  streams whose message is older than their ``max_age`` as stale and streams with none as missing.
  Its *watermark* (the oldest of the streams' newest stamps) is the latest time for which every stream
  has reported (:meth:`~StreamSampler.complete` samples there: a controller's next observation); its
  *frontier* (the newest stamp of any stream) is how far time has visibly moved.
- :class:`TickGrid` places control-rate ticks on the stamp timeline, anchored on the first new message
  of one stream, and releases a tick once its data is complete: every stream has a message newer than
  the tick (plus a reordering lag), or time has moved on past a timeout. Because ticks follow stamps
  rather than the wall clock, a stalled process catches up without losing steps, and a simulator run
  as fast as possible (lock-step) is sampled exactly like a real-time one.
- :class:`RateMeter` measures per-stream message rates from receive times.

Ticks sit half a period after the anchor stream's messages by default (``phase=0.5``), so a message
jittering by up to half a period still lands in its own tick.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000


def to_ns(seconds: float) -> int:
    """Seconds as integer nanoseconds."""
    return round(seconds * NS_PER_S)


@dataclass(frozen=True)
class Entry:
    """One message of a stream: header stamp and receive time (ns) and its value."""

    stamp: int
    received: int
    value: Any


class StreamBuffer:
    """One stream's recent messages, ordered by header stamp; at most ``maxlen`` are kept."""

    def __init__(self, maxlen: int = 1024):
        if maxlen < 1:
            raise ValueError(f"maxlen: expected a positive integer, found {maxlen}")
        self.maxlen = maxlen
        self._stamps: list[int] = []
        self._entries: list[Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, entry: Entry) -> bool:
        """Insert ``entry`` by stamp; False (and nothing stored) when its stamp is already present."""
        i = bisect.bisect_left(self._stamps, entry.stamp)
        if i < len(self._stamps) and self._stamps[i] == entry.stamp:
            return False
        self._stamps.insert(i, entry.stamp)
        self._entries.insert(i, entry)
        if len(self._entries) > self.maxlen:
            del self._stamps[0], self._entries[0]
        return True

    def at(self, t: int) -> Entry | None:
        """The latest entry stamped at or before ``t``."""
        i = bisect.bisect_right(self._stamps, t)
        return self._entries[i - 1] if i else None

    @property
    def newest(self) -> Entry | None:
        return self._entries[-1] if self._entries else None

    def prune(self, t: int) -> None:
        """Drop entries no sample at or after ``t`` can return (all older than ``at(t)``)."""
        i = bisect.bisect_right(self._stamps, t) - 1
        if i > 0:
            del self._stamps[:i], self._entries[:i]

    def clear(self) -> None:
        self._stamps.clear()
        self._entries.clear()


@dataclass(frozen=True)
class StreamSpec:
    """A stream's name and the largest age (ns) its sampled message may have; None: any age."""

    name: str
    max_age: int | None = None


@dataclass(frozen=True)
class Sample:
    """Every stream's latest entry at ``time`` (None where a stream has none)."""

    time: int
    entries: dict[str, Entry | None]
    stale: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every stream has a message that is recent enough."""
        return not self.stale and not self.missing

    @property
    def values(self) -> dict[str, Any]:
        return {name: e.value for name, e in self.entries.items() if e is not None}

    def ages(self) -> dict[str, int]:
        """``time`` minus each present stream's stamp (ns)."""
        return {name: self.time - e.stamp for name, e in self.entries.items() if e is not None}

    @property
    def skew(self) -> int:
        """Newest minus oldest stamp among the sampled messages (ns): how far apart they were taken."""
        stamps = [e.stamp for e in self.entries.values() if e is not None]
        return max(stamps) - min(stamps) if stamps else 0


class StreamSampler:
    """Latest-at-or-before sampling of several named streams by header stamp."""

    def __init__(self, streams: Sequence[StreamSpec], maxlen: int = 1024):
        names = [s.name for s in streams]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"streams: expected one or more distinct names, found {names}")
        self.specs = {s.name: s for s in streams}
        self.buffers = {s.name: StreamBuffer(maxlen) for s in streams}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def push(self, name: str, stamp: int, received: int, value: Any) -> bool:
        """Add a message; False when the stream already holds that stamp (a duplicate)."""
        return self.buffers[name].push(Entry(stamp, received, value))

    def newest(self, name: str) -> Entry | None:
        return self.buffers[name].newest

    def sample(self, t: int) -> Sample:
        """Every stream's latest message at or before ``t``, with staleness against ``max_age``."""
        entries: dict[str, Entry | None] = {}
        stale, missing = [], []
        for name, buf in self.buffers.items():
            e = buf.at(t)
            entries[name] = e
            max_age = self.specs[name].max_age
            if e is None:
                missing.append(name)
            elif max_age is not None and t - e.stamp > max_age:
                stale.append(name)
        return Sample(t, entries, tuple(stale), tuple(missing))

    def complete(self, after: int | None = None) -> Sample | None:
        """The newest observation every stream has reported (the sample at the watermark), if it is newer
        than ``after``: what a controller acts on next (in lock-step, exactly the state the robot published)."""
        watermark = self.watermark()
        if watermark is None or (after is not None and watermark <= after):
            return None
        return self.sample(watermark)

    def watermark(self) -> int | None:
        """The oldest of the streams' newest stamps: every stream has reported up to here (None: one has not)."""
        stamps = [b.newest.stamp if b.newest is not None else None for b in self.buffers.values()]
        return None if None in stamps else min(stamps)

    def frontier(self) -> int | None:
        """The newest stamp of any stream (None before any message)."""
        stamps = [b.newest.stamp for b in self.buffers.values() if b.newest is not None]
        return max(stamps) if stamps else None

    def prune(self, t: int) -> None:
        """Forget what no sample at or after ``t`` can return."""
        for buf in self.buffers.values():
            buf.prune(t)

    def clear(self) -> None:
        for buf in self.buffers.values():
            buf.clear()


class TickGrid:
    """Control-rate tick times on the stamp timeline, released once their data is complete.

    ``restart()`` forgets the grid; :meth:`anchor` (called with the anchor stream's new messages) places
    tick 0 at the earliest such stamp plus ``phase`` periods. :meth:`due` releases tick ``t`` once the
    sampler's watermark exceeds ``t + lag`` (no message at or before ``t`` can still arrive in order,
    ``lag`` allowing for out-of-order stamps) or its frontier reaches ``t + timeout`` (a stream went
    silent: time moved on without it). :meth:`until` releases the remaining ticks before a time, when
    a recording ends.
    """

    def __init__(self, period: int, *, phase: float = 0.5, lag: int = 0, timeout: int):
        if period <= 0:
            raise ValueError(f"period: expected a positive number of nanoseconds, found {period}")
        if not 0.0 <= phase < 1.0:
            raise ValueError(f"phase: expected a fraction of the period in [0, 1), found {phase}")
        if timeout <= period or lag < 0:
            raise ValueError(f"timeout/lag: expected timeout > period ({period} ns) and lag >= 0, found "
                             f"timeout={timeout} ns, lag={lag} ns")
        self.period, self.phase, self.lag, self.timeout = period, phase, lag, timeout
        self.first: int | None = None
        self.next: int | None = None

    def restart(self) -> None:
        self.first = self.next = None

    @property
    def anchored(self) -> bool:
        return self.next is not None

    def anchor(self, stamp: int) -> None:
        """Place tick 0 relative to ``stamp``; until tick 0 is released an earlier stamp (one that arrived out
        of order) moves it back, later ones are ignored."""
        tick = stamp + round(self.phase * self.period)
        if self.next is None or (self.next == self.first and tick < self.first):
            self.first = self.next = tick

    def due(self, sampler: StreamSampler) -> list[int]:
        """The ticks whose data is complete, in order (each released once)."""
        if self.next is None:
            return []
        watermark, frontier = sampler.watermark(), sampler.frontier()
        ticks = []
        while (watermark is not None and watermark > self.next + self.lag) or \
                (frontier is not None and frontier >= self.next + self.timeout):
            ticks.append(self.next)
            self.next += self.period
        return ticks

    def until(self, end: int) -> list[int]:
        """Release every remaining tick before ``end`` (the end of a recording)."""
        ticks = []
        while self.next is not None and self.next < end:
            ticks.append(self.next)
            self.next += self.period
        return ticks


class RateMeter:
    """Per-stream message rates (Hz) over a sliding window of receive times."""

    def __init__(self, names: Iterable[str], window: int = 2 * NS_PER_S):
        self.window = window
        self._times: dict[str, deque[int]] = {name: deque() for name in names}

    def add(self, name: str, received: int) -> None:
        times = self._times[name]
        times.append(received)
        while times and times[0] < received - self.window:
            times.popleft()

    def rates(self, now: int) -> dict[str, float]:
        """Messages per second of each stream over the window ending at ``now``."""
        out = {}
        for name, times in self._times.items():
            recent = sum(1 for t in times if t >= now - self.window)
            out[name] = recent * NS_PER_S / self.window
        return out
