"""Builders for the ROS tests: rosbag2-style message definitions, MCAP bags, node processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: Message definitions as shipped in the venv's share/ (the ROS wheels install them there).
SHARE = Path(sys.prefix) / "share"
BUILTINS = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
            "int64", "uint64", "string", "wstring"}


def _field_types(text: str, package: str) -> list[str]:
    """The non-builtin types a .msg text uses, as package/Type."""
    types = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line:  # blank, or a constant
            continue
        base = re.sub(r"\[.*\]$", "", line.split()[0])
        base = re.sub(r"<=\d+$", "", base)
        if base in BUILTINS:
            continue
        types.append(base if "/" in base else ("std_msgs/Header" if base == "Header" else f"{package}/{base}"))
    return types


def msgdef(type_name: str) -> str:
    """The full definition of ``package/Type`` the way rosbag2 stores it: the message, then each dependency."""
    package, name = type_name.replace("/msg/", "/").split("/")
    main = (SHARE / package / "msg" / f"{name}.msg").read_text()
    parts, seen, todo = [main], set(), _field_types(main, package)
    while todo:
        dep = todo.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        pkg, dep_name = dep.split("/")
        text = (SHARE / pkg / "msg" / f"{dep_name}.msg").read_text()
        parts.append("=" * 80 + f"\nMSG: {pkg}/{dep_name}\n{text}")
        todo += _field_types(text, pkg)
    return "\n".join(parts)


def header(stamp: int, frame_id: str = "") -> dict:
    return {"stamp": {"sec": stamp // 1_000_000_000, "nanosec": stamp % 1_000_000_000}, "frame_id": frame_id}


def joint_state(stamp: int, names: Iterable[str], position: Iterable[float], velocity: Iterable[float] = ()) -> dict:
    return {"header": header(stamp), "name": list(names), "position": [float(v) for v in position],
            "velocity": [float(v) for v in velocity], "effort": []}


def image(stamp: int, pixels: np.ndarray, encoding: str = "rgb8") -> dict:
    h, w, c = pixels.shape
    return {"header": header(stamp), "height": h, "width": w, "encoding": encoding, "is_bigendian": 0,
            "step": w * c, "data": pixels.astype(np.uint8).tobytes()}


def twist(stamp: int, linear: Iterable[float]) -> dict:
    x, y, z = (float(v) for v in linear)
    zero = {"x": 0.0, "y": 0.0, "z": 0.0}
    return {"header": header(stamp), "twist": {"linear": {"x": x, "y": y, "z": z}, "angular": zero}}


def point(stamp: int, xyz: Iterable[float]) -> dict:
    x, y, z = (float(v) for v in xyz)
    return {"header": header(stamp), "point": {"x": x, "y": y, "z": z}}


def write_bag(path: Path, messages: Iterable[tuple[str, str, dict, int]]) -> Path:
    """Write (topic, msg type, message dict, log time) records into an MCAP file with ROS 2 schemas."""
    from mcap_ros2.writer import Writer

    schemas: dict[str, Any] = {}
    with open(path, "wb") as f:
        writer = Writer(f)
        for topic, mtype, msg, log_time in messages:
            if mtype not in schemas:
                schemas[mtype] = writer.register_msgdef(mtype, msgdef(mtype))
            writer.write_message(topic, schemas[mtype], msg, log_time=log_time, publish_time=log_time)
        writer.finish()
    return path


def node_process(module: str, params: Mapping[str, Any], *, name: str | None = None,
                 log: Path | None = None) -> subprocess.Popen:
    """A node module run as a process with ``--ros-args -p ...`` (the environment, domain id included, inherited)."""
    args = [sys.executable, "-m", f"ros_nodes.{module}", "--ros-args"]
    if name:
        args += ["-r", f"__node:={name}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    with open(log or os.devnull, "w") as out:          # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


class FakeRobot:
    """An rclpy node publishing a task's observation topics and command in lock-step style (tests drive it).

    Observation ``k`` is stamped ``t0 + k * period`` with values derived from ``k``; the command answering
    it carries the same stamp. ``overrides`` replace a topic's message (e.g. a malformed one) per step.
    """

    def __init__(self, spec, name: str = "fake_robot", t0: int = 1_000 * 1_000_000_000):
        from rclpy.node import Node

        from robot_learning.data.convert.ros_msgs import bindings, topic_codecs
        from ros_nodes.common import message_class, reliable_qos, sensor_qos

        self.spec = spec
        self.node = Node(name)
        self.period = round(1e9 / spec.control_hz)
        self.t0 = t0
        self.codecs = topic_codecs(spec, bindings(spec, action=True))
        self.publishers = {t: (c, message_class(c.msg), self.node.create_publisher(
            message_class(c.msg), t, reliable_qos(100) if c.keys == ("action",) else sensor_qos(100)))
            for t, c in self.codecs.items()}

    def values(self, k: int) -> dict[str, np.ndarray]:
        out = {}
        for key, o in self.spec.obs.items():
            out[key] = np.full(o.shape, k % 256, np.uint8) if o.is_image else np.full(o.shape, k, np.float32)
        out["action"] = np.full(self.spec.action.dim, (k % 7) / 100, np.float32)
        return out

    def stamp(self, k: int) -> int:
        return self.t0 + k * self.period

    def publish(self, k: int, *, command: bool = True, overrides: dict | None = None) -> None:
        from robot_learning.data.convert.ros_msgs import set_stamp

        values = self.values(k)
        for topic, (codec, cls, pub) in self.publishers.items():
            if codec.keys == ("action",) and not command:
                continue
            msg = (overrides or {}).get(topic) or codec.encode(cls(), values)
            set_stamp(msg, self.stamp(k))
            pub.publish(msg)

    def matched(self) -> bool:
        return all(pub.get_subscription_count() > 0 for _, _, pub in self.publishers.values())
