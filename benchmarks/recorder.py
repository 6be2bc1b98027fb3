"""Recorder benchmark: the highest control rate recorded with zero dropped steps, and publish-to-sample latency.

    python benchmarks/recorder.py                    # rates 50..800 Hz, 5 s each
    python benchmarks/recorder.py --quick            # rates 50, 200, 400 Hz, 2 s each
    python benchmarks/recorder.py --rates 100 300 --seconds 10

A robot with joint states (7 joints: positions and velocities), two 128x128 rgb8 cameras and a 7-D joint
command is published from this process in real time at each rate (every stream at the control rate,
stamped with its scheduled time, as a hardware-timestamped sensor would be, so publisher jitter does not
move a message into another tick); the recorder node runs as its own process (default
parameters: sensor-data QoS, queue depth 1000, flush every 64 steps) and records one episode per rate.

Per rate:
- steps expected (ticks between the first and the last observation), recorded, dropped (stale or
  malformed, counted by the recorder) and *exact*: recorded steps whose joint state is the one published
  for that tick (a lost message would make a tick reuse an older one);
- latency stamp -> DDS reception (``received`` - header stamp; includes the publisher's own lateness) and
  stamp -> sample (``sampled``, when
  the recorder took the tick, - header stamp; a tick is taken once every stream has a newer message, so
  this includes up to one period of waiting by design), p50 and p99, over the joint and camera streams;
- end lag: seconds from the last publish until the episode was committed (a recorder falling behind
  its streams shows here and in the sample latency).
A rate is sustained when every expected step is recorded exactly, none is dropped, and the recorder keeps
up: the median stamp -> sample latency of the episode's last quarter exceeds the first quarter's by at most
``--max-growth`` ms (default 50; a growing backlog is absorbed by the queues for a while, then drops steps).

Results: benchmarks/results/recorder.json and recorder.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import markdown_table, write_results  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOINTS = [f"j{i}" for i in range(1, 8)]
TASK = {
    "name": "recorder_bench", "text": "benchmark robot", "control_hz": 20.0, "max_episode_steps": 100000,
    "observations": {
        "joint_pos": {"shape": [7], "ros": {"topic": "joint_states", "msg": "sensor_msgs/JointState",
                                            "field": "position", "names": JOINTS}},
        "joint_vel": {"shape": [7], "ros": {"topic": "joint_states", "msg": "sensor_msgs/JointState",
                                            "field": "velocity", "names": JOINTS}},
        "left": {"shape": [128, 128, 3], "kind": "rgb",
                 "ros": {"topic": "camera/left/image_raw", "msg": "sensor_msgs/Image"}},
        "right": {"shape": [128, 128, 3], "kind": "rgb",
                  "ros": {"topic": "camera/right/image_raw", "msg": "sensor_msgs/Image"}},
    },
    "action": {"dim": 7, "low": -1.0, "high": 1.0,
               "ros": {"topic": "cmd/joint_position", "msg": "sensor_msgs/JointState", "field": "position",
                       "names": JOINTS}},
}
STREAMS = ["joint_states", "camera/left/image_raw", "camera/right/image_raw"]


class Robot:
    """Publishes the benchmark robot's streams and drives the recorder's services."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_srvs.srv import SetBool, Trigger

        from robot_learning.data.convert.ros_msgs import bindings, topic_codecs
        from robot_learning.spec import TaskSpec
        from ros_nodes.common import message_class, reliable_qos, sensor_qos

        rclpy.init()
        self.spec = TaskSpec.from_dict(TASK)
        self.node = Node("bench_robot")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.outputs = []
        for topic, codec in topic_codecs(self.spec, bindings(self.spec, action=True)).items():
            cls = message_class(codec.msg)
            qos = reliable_qos(1000) if codec.keys == ("action",) else sensor_qos(5)
            self.outputs.append((codec, cls, self.node.create_publisher(cls, topic, qos)))
        self.start_srv = self.node.create_client(Trigger, "/recorder/start_episode")
        self.end_srv = self.node.create_client(SetBool, "/recorder/end_episode")
        self.Trigger, self.SetBool = Trigger, SetBool
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(8)]

    def publish(self, k: int, stamp: int, *, command: bool = True) -> None:
        from robot_learning.data.convert.ros_msgs import set_stamp

        values = {"joint_pos": np.full(7, k, np.float32), "joint_vel": np.zeros(7, np.float32),
                  "left": self.frames[k % 8], "right": self.frames[(k + 4) % 8], "action": np.zeros(7, np.float32)}
        for codec, cls, pub in self.outputs:
            if codec.keys == ("action",) and not command:
                continue
            msg = codec.encode(cls(), values)
            set_stamp(msg, stamp)
            pub.publish(msg)

    def ready(self) -> bool:
        return all(pub.get_subscription_count() for _, _, pub in self.outputs)

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def trial(robot: Robot, rate: float, seconds: float, workdir: Path, task_file: Path) -> dict:
    """Record one episode at ``rate`` Hz for ``seconds``; returns the trial's numbers."""
    from robot_learning.data.store import EpisodeStore
    from ros_nodes.common import call, spin_until

    out = workdir / f"rate_{rate:g}.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "ros_nodes.recorder", "--ros-args", "-p", f"task:={task_file}",
                             "-p", f"out:={out}", "-p", f"rate_hz:={rate}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        if not spin_until(robot.executor, robot.ready, 30) or not spin_until(
                robot.executor, lambda: call(robot.executor, robot.start_srv, robot.Trigger.Request(), 30).success, 30):
            raise RuntimeError(f"rate {rate}: the recorder did not start")
        period, n = 1.0 / rate, round(seconds * rate)
        start, t0 = time.perf_counter(), time.time_ns()
        for k in range(n + 1):
            while (delay := start + k * period - time.perf_counter()) > 0:
                time.sleep(delay)
            robot.publish(k, t0 + round(k * period * 1e9), command=k < n)
        published = time.perf_counter()
        answer = call(robot.executor, robot.end_srv, robot.SetBool.Request(data=True), 120)
        end_lag = time.perf_counter() - published
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    with EpisodeStore.open(out) as store:
        ep = store.episode(0) if store.n_episodes else None
    if ep is None:
        return {"rate_hz": rate, "expected": n, "recorded": 0, "error": answer.message}
    joints = ep.obs["joint_pos"][:, 0].astype(int)
    exact = int(np.sum(joints == np.arange(joints[0], joints[0] + len(joints)))) if len(joints) else 0
    transport = np.concatenate([ep.extras[f"received/{s}"] - ep.extras[f"stamp/{s}"] for s in STREAMS]) / 1e6
    sample = np.concatenate([ep.extras["sampled"] - ep.extras[f"stamp/{s}"] for s in STREAMS]) / 1e6
    joint_sample = (ep.extras["sampled"] - ep.extras["stamp/joint_states"]) / 1e6
    quarter = max(1, len(joint_sample) // 4)
    return {
        "rate_hz": rate, "expected": n, "recorded": len(ep), "exact": exact, "dropped": int(ep.meta["dropped_steps"]),
        "first_step": int(joints[0]) if len(joints) else None,
        "latency_publish_receive_ms": percentiles(transport),
        "latency_publish_sample_ms": percentiles(sample),
        "backlog_growth_ms": float(np.median(joint_sample[-quarter:]) - np.median(joint_sample[:quarter])),
        "end_lag_s": end_lag,
    }


def percentiles(ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def sustained(r: dict, max_growth_ms: float) -> bool:
    """Every expected step recorded exactly (the first tick may anchor on the second message), none dropped, and
    the recorder keeps up: its sample latency does not grow from the first to the last quarter of the episode."""
    return (r.get("dropped") == 0 and r.get("exact") == r.get("recorded") and r.get("recorded", 0) >= r["expected"] - 1
            and r["backlog_growth_ms"] <= max_growth_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200, 300, 400, 600, 800])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-growth", type=float, default=50.0,
                        help="ms: largest rise of the median sample latency (first to last quarter) of 'sustained'")
    parser.add_argument("--quick", action="store_true", help="rates 50, 200, 400 Hz for 2 s each")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds = [50, 200, 400], 2.0
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    robot = Robot()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        task_file = Path(tmp) / "recorder_bench.yaml"
        task_file.write_text(yaml.safe_dump(TASK))
        try:
            for rate in args.rates:
                r = trial(robot, rate, args.seconds, Path(tmp), task_file)
                r["sustained"] = sustained(r, args.max_growth)
                rows.append(r)
                print(r, flush=True)
        finally:
            robot.close()
    best = max([r["rate_hz"] for r in rows if r["sustained"]], default=None)
    table = [{"rate Hz": r["rate_hz"], "expected": r["expected"], "recorded": r.get("recorded"),
              "exact": r.get("exact"), "dropped": r.get("dropped"),
              "recv p50 ms": r.get("latency_publish_receive_ms", {}).get("p50"),
              "recv p99 ms": r.get("latency_publish_receive_ms", {}).get("p99"),
              "sample p50 ms": r.get("latency_publish_sample_ms", {}).get("p50"),
              "sample p99 ms": r.get("latency_publish_sample_ms", {}).get("p99"),
              "backlog growth ms": r.get("backlog_growth_ms"), "end lag s": r.get("end_lag_s"),
              "sustained": r["sustained"]} for r in rows]
    columns = list(table[0])
    text = (f"Highest sustained rate: **{best} Hz** (joint states + two 128x128 rgb8 cameras + 7-D command, "
            f"{args.seconds:g} s per rate).\n\n" + markdown_table(table, columns))
    paths = write_results("recorder", {"max_sustained_rate_hz": best, "seconds": args.seconds, "trials": rows},
                          [("Recorder: rate and latency", text)])
    print(f"highest sustained rate: {best} Hz; results in {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
