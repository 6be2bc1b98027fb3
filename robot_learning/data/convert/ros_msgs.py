"""ROS 2 messages <-> numpy, per TaskSpec binding (:class:`~robot_learning.spec.RosBinding`).

One conversion layer for every ROS path: the recorder and the scripted teleop decode the robot's
messages, the simulated robot and the teleop encode theirs, and the rosbag2 importer decodes messages
read from MCAP files. It uses attribute access only, so it works on rclpy message objects and on the
dynamic classes ``mcap_ros2`` decodes, and never imports rclpy.

A binding selects a value from a message in one of four ways, by message type and binding:

- ``sensor_msgs/JointState`` with ``names``: the entries of ``field`` (position, velocity, effort) for
  those joints, matched by name in the message's ``name`` list (the order of ``names`` is the vector's).
- a sub-message with ``names``: its attributes, e.g. ``field: point, names: [x, y, z]`` or
  ``field: twist.linear``.
- a sequence ``field`` without ``names`` (e.g. ``std_msgs/Float64MultiArray`` ``data``): the whole field.
- ``sensor_msgs/Image`` (rgb8/bgr8/rgba8/bgra8/mono8) or ``sensor_msgs/CompressedImage`` (jpeg/png) for
  a camera key: an (H, W, 3) uint8 RGB image of the task's size.

A message that does not match (missing joint, wrong count, wrong image size or encoding) raises
:class:`MessageMismatch` naming the topic, the key, what was expected and what was seen.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_learning.spec import RosBinding, SpecError, TaskSpec

#: The key under which a task's action is bound (next to its observation keys).
ACTION_KEY = "action"
#: Raw image encodings decoded to RGB: channel count and the RGB channel order.
IMAGE_ENCODINGS = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]),
                   "bgra8": (4, [2, 1, 0]), "mono8": (1, [0, 0, 0])}
#: CompressedImage formats written by :meth:`FieldCodec.encode` (image_transport's ``format`` text).
COMPRESSED_FORMATS = {"jpeg": "rgb8; jpeg compressed rgb8", "png": "rgb8; png compressed rgb8"}


class MessageMismatch(SpecError):
    """A message does not fit the TaskSpec binding it should fill (names topic, key, expected, seen)."""


def msg_type(name: str) -> str:
    """A message type as ``package/msg/Type`` (accepts ``package/Type``)."""
    parts = name.strip("/").split("/")
    if len(parts) == 2:
        parts.insert(1, "msg")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise SpecError(f"message type: expected 'package/Type' or 'package/msg/Type', found {name!r}")
    return "/".join(parts)


def stamp_ns(msg: Any) -> int | None:
    """The message's ``header.stamp`` in nanoseconds, or None for a message without a header."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def set_stamp(msg: Any, ns: int, frame_id: str | None = None) -> None:
    """Set ``header.stamp`` (and ``header.frame_id``) of ``msg``."""
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(ns), 1_000_000_000)
    if frame_id is not None:
        msg.header.frame_id = frame_id


def _resolve(msg: Any, path: str) -> tuple[Any, str]:
    """(parent object, last attribute name) of a dotted field path."""
    parts = path.split(".")
    parent = msg
    for part in parts[:-1]:
        parent = getattr(parent, part)
    if not hasattr(parent, parts[-1]):
        raise AttributeError(path)
    return parent, parts[-1]


@dataclass(frozen=True)
class FieldCodec:
    """How one key (an observation key or ``action``) is read from and written to its message."""

    key: str
    topic: str
    msg: str
    field: str | None
    names: tuple[str, ...]
    shape: tuple[int, ...]
    image: bool

    @property
    def kind(self) -> str:
        if self.image:
            return "compressed" if self.msg.endswith("/CompressedImage") else "image"
        if self.names and self.msg.endswith("/JointState"):
            return "joints"
        return "attributes" if self.names else "array"

    def _where(self) -> str:
        return f"topic '{self.topic}' ({self.msg}) for '{self.key}'"

    def _mismatch(self, expected: str, found: str) -> MessageMismatch:
        field = f" field '{self.field}'" if self.field else ""
        return MessageMismatch(f"{self._where()}{field}: expected {expected}, found {found}")

    # ------------------------------------------------------------------------------ decode
    def decode(self, msg: Any) -> np.ndarray:
        """The key's value in ``msg``: float32 (dim,) or uint8 (H, W, 3)."""
        kind = self.kind
        if kind == "image":
            return self._decode_image(msg)
        if kind == "compressed":
            return self._decode_compressed(msg)
        try:
            parent, attr = _resolve(msg, self.field or "data")
            value = getattr(parent, attr)
        except AttributeError:
            raise self._mismatch("a message with that field", f"a {type(msg).__name__} without it") from None
        if kind == "joints":
            present = list(msg.name)
            index = {n: i for i, n in enumerate(present)}
            missing = [n for n in self.names if n not in index]
            if missing:
                raise self._mismatch(f"joints {list(self.names)}", f"{len(present)} joint(s) {present}")
            if len(value) != len(present):
                raise self._mismatch(f"one value per joint ({len(present)})", f"{len(value)} value(s)")
            return np.asarray([value[index[n]] for n in self.names], dtype=np.float32)
        if kind == "attributes":
            try:
                return np.asarray([getattr(value, n) for n in self.names], dtype=np.float32)
            except AttributeError:
                raise self._mismatch(f"attributes {list(self.names)}", f"a {type(value).__name__}") from None
        arr = np.atleast_1d(np.asarray(value, dtype=np.float32))
        if arr.shape != self.shape:
            raise self._mismatch(f"{self.shape[0]} value(s)", f"{arr.size}")
        return arr

    def _decode_image(self, msg: Any) -> np.ndarray:
        h, w, _ = self.shape
        encoding = str(msg.encoding)
        if encoding not in IMAGE_ENCODINGS or (msg.height, msg.width) != (h, w):
            raise self._mismatch(f"a {h}x{w} image in {sorted(IMAGE_ENCODINGS)} (e.g. rgb8)",
                                 f"{msg.height}x{msg.width} {encoding}")
        channels, order = IMAGE_ENCODINGS[encoding]
        data = np.frombuffer(msg.data, dtype=np.uint8)
        if msg.step < w * channels or data.size < msg.step * h:
            raise self._mismatch(f"step >= {w * channels} and {h} rows of data",
                                 f"step {msg.step} and {data.size} bytes")
        rows = data[:msg.step * h].reshape(h, msg.step)[:, :w * channels].reshape(h, w, channels)
        return np.ascontiguousarray(rows[..., order])

    def _decode_compressed(self, msg: Any) -> np.ndarray:
        from PIL import Image  # local: only compressed streams need an image codec

        h, w, _ = self.shape
        try:
            img = Image.open(io.BytesIO(bytes(msg.data)))
            img.load()
        except Exception as e:  # noqa: BLE001 - any decoder failure is a malformed message
            raise self._mismatch("a jpeg/png image", f"undecodable data ({type(e).__name__}: {e})") from None
        if img.size != (w, h):
            raise self._mismatch(f"a {h}x{w} image", f"{img.size[1]}x{img.size[0]} ({msg.format})")
        return np.asarray(img.convert("RGB"), dtype=np.uint8)

    # ------------------------------------------------------------------------------ encode
    def encode(self, msg: Any, value: np.ndarray) -> None:
        """Write ``value`` into ``msg`` (a message of this codec's type), in place."""
        kind = self.kind
        if kind == "image":
            img = np.ascontiguousarray(value, dtype=np.uint8)
            msg.height, msg.width = img.shape[:2]
            msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, img.shape[1] * 3
            msg.data = img.tobytes()
            return
        if kind == "compressed":
            from PIL import Image

            fmt = "png" if "png" in str(msg.format) else "jpeg"
            buf = io.BytesIO()
            Image.fromarray(np.asarray(value, dtype=np.uint8)).save(buf, format=fmt.upper())
            msg.format, msg.data = COMPRESSED_FORMATS[fmt], buf.getvalue()
            return
        values = [float(v) for v in np.asarray(value).reshape(-1)]
        parent, attr = _resolve(msg, self.field or "data")
        if kind == "joints":
            names = list(msg.name)
            names += [n for n in self.names if n not in names]
            current = list(getattr(parent, attr))
            column = current + [float("nan")] * (len(names) - len(current))
            for n, v in zip(self.names, values, strict=True):
                column[names.index(n)] = v
            msg.name = names
            setattr(parent, attr, column)
        elif kind == "attributes":
            target = getattr(parent, attr)
            for n, v in zip(self.names, values, strict=True):
                setattr(target, n, v)
        else:
            setattr(parent, attr, values)


@dataclass(frozen=True)
class TopicCodec:
    """Every key a task binds to one topic: decode a message into them, or encode them into one."""

    topic: str
    msg: str
    fields: tuple[FieldCodec, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    @property
    def stream(self) -> str:
        """The stream name (topic without a leading slash): names per-stream store arrays."""
        return self.topic.lstrip("/")

    def decode(self, msg: Any) -> dict[str, np.ndarray]:
        return {f.key: f.decode(msg) for f in self.fields}

    def encode(self, msg: Any, values: Mapping[str, np.ndarray]) -> Any:
        for f in self.fields:
            f.encode(msg, values[f.key])
        return msg


def bindings(spec: TaskSpec, keys: Sequence[str] | None = None, *, action: bool = False,
             overrides: Mapping[str, Mapping[str, Any]] | None = None, namespace: str | None = None,
             where: str | None = None) -> dict[str, RosBinding]:
    """Key -> binding for ``keys`` (default: every observation key) and optionally ``action``.

    ``overrides`` replace parts of a key's binding (``topic``, ``msg``, ``field``, ``names``);
    ``namespace`` makes relative topics absolute (as ROS resolves them; the importer needs this).
    """
    where = where or spec.source
    keys = list(spec.obs_keys if keys is None else keys) + ([ACTION_KEY] if action else [])
    base = {k: spec.obs[k].ros for k in spec.obs_keys}
    base[ACTION_KEY] = spec.action.ros
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise SpecError(f"{where}: topics.{unknown[0]}: expected one of the task's keys {sorted(base)}, found "
                        f"'{unknown[0]}'")
    out = {}
    for key in keys:
        if key not in base:
            raise SpecError(f"{where}: key '{key}': expected one of the task's keys {sorted(base)}")
        b, change = base[key], dict(overrides.get(key) or {})
        bad = sorted(set(change) - {"topic", "msg", "field", "names"})
        if bad:
            raise SpecError(f"{where}: topics.{key}.{bad[0]}: expected one of topic/msg/field/names, found '{bad[0]}'")
        if b is None and not {"topic", "msg"} <= set(change):
            raise SpecError(f"{where}: '{key}': expected a ROS binding (ros: {{topic, msg}} in the task, or "
                            f"topics.{key} with topic and msg), found none")
        merged = (b.to_dict() if b is not None else {"field": None, "names": []}) | change
        topic = str(merged["topic"])
        if namespace is not None and not topic.startswith("/"):
            topic = "/" + "/".join(p for p in (namespace.strip("/"), topic) if p)
        out[key] = RosBinding(topic=topic, msg=str(merged["msg"]), field=merged.get("field"),
                              names=tuple(str(n) for n in merged.get("names") or ()))
    return out


def topic_codecs(spec: TaskSpec, keyed: Mapping[str, RosBinding],
                 where: str | None = None) -> dict[str, TopicCodec]:
    """Group ``keyed`` bindings (from :func:`bindings`) by topic into codecs, checking them against ``spec``."""
    where = where or spec.source
    by_topic: dict[str, list[FieldCodec]] = {}
    types: dict[str, str] = {}
    for key, b in keyed.items():
        if key == ACTION_KEY:
            shape, image = (spec.action.dim,), False
        else:
            shape, image = spec.obs[key].shape, spec.obs[key].is_image
        mtype = msg_type(b.msg)
        if image and not mtype.endswith(("/Image", "/CompressedImage")):
            raise SpecError(f"{where}: '{key}'.ros.msg: expected sensor_msgs/Image or sensor_msgs/CompressedImage "
                            f"for a camera, found {b.msg}")
        if not image and b.names and len(b.names) != shape[0]:
            raise SpecError(f"{where}: '{key}'.ros.names: expected {shape[0]} names (one per dimension), "
                            f"found {list(b.names)}")
        if types.setdefault(b.topic, mtype) != mtype:
            raise SpecError(f"{where}: topic '{b.topic}': expected one message type for all keys bound to it, "
                            f"found {types[b.topic]} and {mtype} ('{key}')")
        by_topic.setdefault(b.topic, []).append(FieldCodec(key=key, topic=b.topic, msg=mtype, field=b.field,
                                                           names=b.names, shape=tuple(shape), image=image))
    return {topic: TopicCodec(topic, types[topic], tuple(fields)) for topic, fields in by_topic.items()}
