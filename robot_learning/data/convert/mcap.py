"""rosbag2 MCAP recordings -> an episode store, with no ROS install (``mcap`` + ``mcap-ros2-support``).

    robot-learning dataset convert recording/ task=arm_reach out=data/from_bag.zarr
    robot-learning dataset convert run.mcap task=arm_push out=data/push.zarr topics_config=configs/ros/mcap_topics.yaml

The input is one ``.mcap`` file or a rosbag2 directory (``metadata.yaml`` and its ``.mcap`` files, read
in name order). Topics map to the TaskSpec's keys through its ROS bindings (relative topics resolved in
``namespace``), changed per key by the topics config (``configs/ros/mcap_topics.yaml`` documents it).

Messages are resampled at the control rate exactly like the live recorder does (the same
:class:`~robot_learning.data.recording.StreamRecorder`): ticks on the header-stamp timeline, the
latest message of every stream at or before each tick, stale or malformed steps skipped and counted.
Stamps out of order within a stream are put back in order within ``reorder`` seconds. Episodes are
split by ``split``:

- ``{by: bag}``: one episode per ``.mcap`` file;
- ``{by: gap, gap: <s>}``: a new episode where no message was logged for ``gap`` seconds;
- ``{by: topic, topic: <name>}``: each message on the marker topic is a boundary; a ``std_msgs/String``
  marker saying ``start``, ``success``, ``failure`` or ``discard`` (the recorder's ``~/events``) starts
  an episode, ends it with that outcome, or drops it.

Episodes carry ``source``/``source_episode`` meta, ``success`` from the markers (else false), and per
step the extras ``stamp/<topic>`` (header stamps) and ``received/<topic>`` (log times), in ns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from tqdm import tqdm

from robot_learning.config import ConfigError, build
from robot_learning.data.convert.episodes import ConvertOptions
from robot_learning.data.convert.ros_msgs import msg_type, stamp_ns
from robot_learning.data.recording import SamplingConfig, StreamRecorder
from robot_learning.data.store import StoreError
from robot_learning.data.tools.building import staged_store
from robot_learning.spec import SpecError, TaskSpec
from robot_learning.streams import to_ns

log = logging.getLogger(__name__)

SPLITS = ("bag", "gap", "topic")
MARKER_EVENTS = ("start", "success", "failure", "discard")


@dataclass
class McapConfig(SamplingConfig):
    """The topics config of the importer: sampling (as the recorder's) plus namespace and episode split."""

    # Out-of-order allowance (s): bags of real robots interleave streams recorded by different nodes.
    reorder: float = 0.1
    # Namespace resolving the TaskSpec's relative topics (joint_states -> /joint_states).
    namespace: str = "/"
    # How episodes are delimited: {by: bag} | {by: gap, gap: 1.0} | {by: topic, topic: /recorder/events}.
    split: dict[str, Any] = field(default_factory=lambda: {"by": "bag"})


def load_config(path: str | None) -> McapConfig:
    """The topics config at ``path`` (None: every default), checked; errors name the file and key."""
    if path is None:
        return McapConfig()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: topics config: expected a readable YAML file, found {type(e).__name__}: {e}") from None
    cfg = build(McapConfig, data, where=str(p))
    by = cfg.split.get("by")
    needs = {"bag": set(), "gap": {"gap"}, "topic": {"topic"}}
    if by not in SPLITS or set(cfg.split) != {"by"} | needs[by]:
        raise ConfigError(f"{p}: split: expected {{by: bag}}, {{by: gap, gap: <seconds>}} or {{by: topic, topic: "
                          f"<name>}}, found {cfg.split}")
    return cfg


def bag_files(path: Path) -> list[Path]:
    """The ``.mcap`` files of an input: the file itself, or a rosbag2 directory's files in name order."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap"))
    if not files:
        raise StoreError(f"{path}: expected a .mcap file or a rosbag2 directory with .mcap files, found none")
    return files


def _check_channels(files: list[Path], rec: StreamRecorder, marker: str | None) -> None:
    """Every bound topic must be recorded with the bound message type (in at least one file)."""
    seen: dict[str, str] = {}
    for f in files:
        with open(f, "rb") as stream:
            summary = make_reader(stream).get_summary()
        if summary is None:
            raise StoreError(f"{f}: expected an MCAP file with a summary section, found none "
                             "(an unfinished recording?)")
        for channel in summary.channels.values():
            schema = summary.schemas.get(channel.schema_id)
            seen[channel.topic] = msg_type(schema.name) if schema is not None else "?"
    for topic, codec in rec.codecs.items():
        if topic not in seen:
            raise SpecError(f"{files[0].parent if len(files) > 1 else files[0]}: topic '{topic}' (for "
                            f"{list(codec.keys)}): expected it in the recording, found only {sorted(seen)} "
                            "(map it with 'topics' in the topics config)")
        if seen[topic] != codec.msg:
            raise SpecError(f"{files[0]}: topic '{topic}': expected message type {codec.msg}, found {seen[topic]}")
    if marker is not None and marker not in seen:
        raise SpecError(f"{files[0]}: split marker topic '{marker}': expected it in the recording, found only "
                        f"{sorted(seen)}")


def _messages(files: list[Path], topics: list[str]) -> Iterator[tuple[int, str, Any, int]]:
    """(file index, topic, decoded message, log time) in log-time order, file after file."""
    for i, f in enumerate(files):
        with open(f, "rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for _, channel, message, ros_msg in reader.iter_decoded_messages(topics=topics, log_time_order=True):
                yield i, channel.topic, ros_msg, message.log_time


class _Episodes:
    """Starts and ends the recorder's episodes as the split rule says."""

    def __init__(self, rec: StreamRecorder, source: str):
        self.rec, self.source = rec, source
        self.count = 0
        self.written = 0

    def start(self) -> None:
        if self.rec.active:
            self.end(False)
        self.rec.start(source=self.source, source_episode=self.count)
        self.count += 1

    def end(self, success: bool) -> None:
        if self.rec.active and self.rec.end(success, self.rec.end_frontier()) >= 0:
            self.written += 1

    def discard(self) -> None:
        if self.rec.active:
            self.rec.discard()


def convert(input: Path, spec: TaskSpec, out: Path, options: ConvertOptions) -> Path:
    """Convert the recording at ``input`` into a new store at ``out`` (see the module docstring)."""
    cfg = load_config(options.topics_config)
    files = bag_files(input)
    by = cfg.split["by"]
    marker = None
    if by == "topic":
        marker = cfg.split["topic"] if cfg.split["topic"].startswith("/") else \
            "/" + "/".join(p for p in (cfg.namespace.strip("/"), cfg.split["topic"]) if p)
    with staged_store(out, spec, source=str(input), overwrite=options.overwrite) as store:
        with store.writer() as writer:
            rec = StreamRecorder(spec, writer, cfg, namespace=cfg.namespace, where=options.topics_config or str(input),
                                 on_problem=lambda text: log.error("%s: %s", input, text))
            _check_channels(files, rec, marker)
            episodes = _Episodes(rec, str(input))
            gap = to_ns(float(cfg.split.get("gap", 0.0)))
            last_file, last_log = -1, None
            topics = sorted(rec.codecs) + ([marker] if marker else [])
            for i, topic, msg, log_time in tqdm(_messages(files, topics), desc=f"convert {input.name}", unit="msg"):
                if (by == "bag" and i != last_file) or \
                        (by == "gap" and (last_log is None or log_time - last_log > gap)):
                    episodes.start()
                last_file, last_log = i, log_time
                if topic == marker:
                    event = str(getattr(msg, "data", ""))
                    if event == "start" or event not in MARKER_EVENTS:
                        episodes.start()
                    elif event == "discard":
                        episodes.discard()
                    else:
                        episodes.end(event == "success")
                    continue
                stamp = stamp_ns(msg)
                rec.push(topic, msg, log_time if stamp is None else stamp, log_time)
            episodes.end(False)
        if store.n_episodes == 0:
            raise StoreError(f"{input}: expected at least one episode with complete steps, found none "
                             f"(dropped steps: {rec.drop_reasons or 'none'})")
    if rec.dropped_total:
        log.warning("%s: %d step(s) skipped: %s", input, rec.dropped_total, rec.drop_reasons)
    return out
