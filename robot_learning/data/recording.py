"""Turning a task's ROS streams into episodes: sample at the control rate, check, write.

:class:`StreamRecorder` is the recorder's logic without ROS. Messages go in with their header stamp
and receive time (:meth:`~StreamRecorder.push`); while an episode is active, every control-rate tick
whose data is complete (:class:`~robot_learning.streams.TickGrid`) becomes one step: the latest message
of every stream the TaskSpec binds, plus the action topic, at or before the tick. A tick where a stream
is stale (older than its ``max_age``), missing, or carries a message that does not fit the TaskSpec is
skipped and counted. Steps are written through the :class:`~robot_learning.data.writer.EpisodeWriter`
(streaming, bounded memory) with extras ``stamp/<stream>`` and ``received/<stream>`` (ns) for every
stream, ``tick`` (the tick's stamp time) and ``sampled`` (when the tick was taken: the ``clock`` if one is
given, else the receive time of the message that completed it).

The recorder node feeds it from subscriptions; the rosbag2 importer feeds it from MCAP files.

Ending an episode (:meth:`~StreamRecorder.end`) records the remaining ticks up to the newest
observation at the time of the request: the last step is the one whose action was sent before the
final observation. A caller that may still be receiving that action waits until
:meth:`~StreamRecorder.caught_up` (the recorder node does, for a bounded time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_learning.data.convert.ros_msgs import ACTION_KEY, MessageMismatch, TopicCodec, bindings, topic_codecs
from robot_learning.data.writer import EpisodeWriter
from robot_learning.spec import SpecError, TaskSpec
from robot_learning.streams import RateMeter, Sample, StreamSampler, StreamSpec, TickGrid, to_ns

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    """How streams are sampled into steps (configs/ros/recorder.yaml and the importer's topics config)."""

    # Control rate of the steps (Hz); 0 uses the task's control_hz.
    rate_hz: float = 0.0
    # Largest age (s) of a stream's message at a tick; an older one makes the step stale (skipped).
    max_age: float = 0.25
    # Per-topic max_age (s), e.g. {camera/front/image_raw: 0.1}; topics as bound (or after overrides).
    max_age_topics: dict[str, float] = field(default_factory=dict)
    # Where ticks sit between the anchor stream's messages, as a fraction of the period (0.5: halfway,
    # so a message jittering by up to half a period is sampled at its own tick).
    phase: float = 0.5
    # Topic whose first new message after an episode starts anchors the ticks; "" = the first observation's.
    anchor: str = ""
    # Stamp time (s) after which a tick is taken although a stream has not reported past it.
    timeout: float = 0.5
    # Allowance (s) for out-of-order stamps within a stream: a tick waits this much longer for its data.
    reorder: float = 0.0
    # Binding overrides per key (observation key or 'action'): {topic, msg, field, names}.
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)


class StreamRecorder:
    """Samples a task's streams at the control rate and writes the steps as episodes.

    ``namespace`` makes the task's relative topics absolute (the importer); ``on_problem`` receives the
    first report of each stream whose messages do not fit the TaskSpec (the node logs it).
    """

    def __init__(self, spec: TaskSpec, writer: EpisodeWriter, config: SamplingConfig | None = None, *,
                 namespace: str | None = None, on_problem: Callable[[str], None] | None = None,
                 clock: Callable[[], int] | None = None, where: str | None = None):
        self.spec = spec
        self.writer = writer
        self.config = config = config or SamplingConfig()
        where = where or spec.source
        keyed = bindings(spec, action=True, overrides=config.topics, namespace=namespace, where=where)
        self.codecs: dict[str, TopicCodec] = topic_codecs(spec, keyed, where=where)
        self.action_topic = keyed[ACTION_KEY].topic
        self.obs_topics = [t for t in self.codecs if t != self.action_topic]
        if len(self.codecs[self.action_topic].keys) > 1:
            raise SpecError(f"{where}: topic '{self.action_topic}': expected the action topic to carry the action "
                            f"only, found observation keys bound to it too")
        unknown = sorted(set(config.max_age_topics) - set(self.codecs))
        if unknown:
            raise SpecError(f"{where}: max_age_topics.{unknown[0]}: expected one of the bound topics "
                            f"{sorted(self.codecs)}, found '{unknown[0]}'")
        anchor = config.anchor or keyed[spec.obs_keys[0]].topic
        if anchor not in self.obs_topics:
            raise SpecError(f"{where}: anchor: expected an observation topic, one of {self.obs_topics}, "
                            f"found '{anchor}'")
        self.anchor = anchor
        self.rate_hz = config.rate_hz or spec.control_hz
        self.period = to_ns(1.0 / self.rate_hz)
        streams = [StreamSpec(t, to_ns(config.max_age_topics.get(t, config.max_age))) for t in self.codecs]
        self.sampler = StreamSampler(streams)
        self.grid = TickGrid(self.period, phase=config.phase, lag=to_ns(config.reorder),
                             timeout=to_ns(config.timeout))
        self.rates = RateMeter(self.codecs)
        self.on_problem = on_problem or (lambda text: log.error("%s", text))
        self.clock = clock
        self.problems: dict[str, str] = {}
        self.active = False
        self.steps = 0
        self.dropped = 0
        self.dropped_total = 0
        self.drop_reasons: dict[str, int] = {}
        self.episode_drop_reasons: dict[str, int] = {}
        self.skew_ns = {"last": 0, "max": 0}
        self._pending: tuple[dict, np.ndarray, float, dict] | None = None
        self._floor: int | None = None

    # ------------------------------------------------------------------------------ input
    def push(self, topic: str, msg: Any, stamp: int, received: int) -> None:
        """Add one message of ``topic`` (header stamp and receive time in ns); record completed ticks."""
        codec = self.codecs[topic]
        try:
            value: Any = codec.decode(msg)
        except MessageMismatch as e:
            value = e
            if topic not in self.problems:
                self.problems[topic] = str(e)
                self.on_problem(f"{e} (steps using these messages are not recorded)")
        self.rates.add(topic, received)
        if not self.sampler.push(topic, stamp, received, value):
            return
        if self.active and topic == self.anchor and (self._floor is None or stamp > self._floor):
            self.grid.anchor(stamp)
        if self.active:
            for tick in self.grid.due(self.sampler):
                self._take(tick, self.clock() if self.clock else received)
        else:
            frontier = self.sampler.frontier()
            self.sampler.prune(frontier - max(s.max_age or 0 for s in self.sampler.specs.values()))

    # ------------------------------------------------------------------------------ episodes
    def start(self, **meta: Any) -> None:
        """Begin an episode: its ticks are anchored on the anchor stream's next message stamped after
        everything seen so far (a late copy of an older state cannot start it)."""
        if self.active:
            raise RuntimeError(f"start: expected no active episode, found one with {self.steps} steps")
        self.writer.begin(**meta)
        self.grid.restart()
        self._floor = self.sampler.frontier()
        self.active = True
        self.steps = self.dropped = 0
        self.episode_drop_reasons = {}
        self.skew_ns = {"last": 0, "max": 0}
        self._pending = None

    def end_frontier(self) -> int | None:
        """Where an episode ending now stops: the newest stamp seen (None before any message)."""
        return self.sampler.frontier()

    def caught_up(self, frontier: int | None) -> bool:
        """True once every stream has reported up to one period before ``frontier``."""
        watermark = self.sampler.watermark()
        return frontier is None or (watermark is not None and watermark >= frontier - self.period)

    def end(self, success: bool, frontier: int | None = None, **meta: Any) -> int:
        """Record the remaining ticks before ``frontier`` (:meth:`end_frontier`), then commit the episode.

        Returns the episode index, or -1 when it had no step (nothing is written).
        """
        if not self.active:
            raise RuntimeError("end: expected an active episode, found none")
        watermark = self.sampler.watermark()
        if frontier is not None and watermark is not None:
            sampled = self.clock() if self.clock else self.sampler.newest(self.anchor).received
            for tick in self.grid.until(min(frontier, watermark + self.period)):
                self._take(tick, sampled)
        self._flush_pending(terminal=bool(success))
        self.active = False
        return self.writer.end(success, dropped_steps=self.dropped, **meta)

    def discard(self) -> None:
        """Drop the active episode (nothing of it stays in the store)."""
        self.writer.discard()
        self.active = False
        self._pending = None

    # ------------------------------------------------------------------------------ status
    def status(self, now: int) -> dict[str, Any]:
        """What the recorder is doing, as plain data (the node publishes it as JSON)."""
        return {
            "recording": self.active,
            "episode": self.writer.store.n_episodes,
            "steps": self.steps,
            "dropped_steps": self.dropped,
            "dropped_total": self.dropped_total,
            "drop_reasons": dict(self.drop_reasons),
            "rates_hz": {t: round(r, 2) for t, r in self.rates.rates(now).items()},
            "skew_ms": {k: v / 1e6 for k, v in self.skew_ns.items()},
            "rate_hz": self.rate_hz,
            "problems": dict(self.problems),
        }

    # ------------------------------------------------------------------------------ steps
    def _drop(self, reasons: list[str]) -> None:
        self.dropped += 1
        self.dropped_total += 1
        for r in reasons:
            self.drop_reasons[r] = self.drop_reasons.get(r, 0) + 1
            self.episode_drop_reasons[r] = self.episode_drop_reasons.get(r, 0) + 1

    def _take(self, tick: int, sampled: int) -> None:
        s: Sample = self.sampler.sample(tick)
        self.sampler.prune(tick)
        invalid = [t for t, e in s.entries.items() if e is not None and isinstance(e.value, MessageMismatch)]
        if not s.ok or invalid:
            self._drop([f"stale:{t}" for t in s.stale] + [f"missing:{t}" for t in s.missing]
                       + [f"invalid:{t}" for t in invalid])
            return
        obs: dict[str, np.ndarray] = {}
        for topic in self.obs_topics:
            obs.update(s.entries[topic].value)
        action = s.entries[self.action_topic].value[ACTION_KEY]
        try:
            self.spec.validate_observation(obs, where=f"tick {tick}")
            self.spec.validate_action(action, where=f"tick {tick}")
        except SpecError as e:
            key = "values"
            if key not in self.problems:
                self.problems[key] = str(e)
                self.on_problem(f"{e} (such steps are not recorded)")
            self._drop([f"invalid:{key}"])
            return
        extras: dict[str, Any] = {"tick": np.int64(tick), "sampled": np.int64(sampled)}
        for topic, e in s.entries.items():
            name = self.codecs[topic].stream
            extras[f"stamp/{name}"] = np.int64(e.stamp)
            extras[f"received/{name}"] = np.int64(e.received)
        self.skew_ns["last"] = s.skew
        self.skew_ns["max"] = max(self.skew_ns["max"], s.skew)
        self._flush_pending(terminal=False)
        self._pending = (obs, action, (tick - self.grid.first) / 1e9, extras)
        self.steps += 1

    def _flush_pending(self, terminal: bool) -> None:
        """Write the held-back step: the last step of an episode is terminal when it succeeded."""
        if self._pending is not None:
            obs, action, timestamp, extras = self._pending
            self.writer.add_step(obs, action, terminal=terminal, timestamp=timestamp, extras=extras)
            self._pending = None

