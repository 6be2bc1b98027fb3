"""Inference benchmark: batch-1 latency of exported policies, and the policy node's loop jitter in real time.

    python benchmarks/inference.py                   # 10,000 MLP calls, 2,000 image calls, 15 s per node rate
    python benchmarks/inference.py --quick           # 2,000 / 400 calls, 5 s per rate
    python benchmarks/inference.py --rates 50 200 500 --seconds 30

1. Latency, batch 1, of two IQL actors exported with the export verb's path (``export_algorithm``): the MLP
   actor (2x256, 17-D observation, 6-D action: the shape of measurements.md's anchors) and an image actor
   (the DrQ CNN encoder on a 64x64 camera plus a 7-D state). Per call, interleaved round-robin so machine
   noise hits every path alike: onnxruntime ``session.run`` (1 intra-op thread), ``OnnxPolicy`` (the deploy
   path: the same session plus input validation), torch eager under ``no_grad`` and torch under
   ``inference_mode`` (torch on 1 thread too). The MLP paths are also timed paced, one call every 5 ms as
   in a 200 Hz loop, where caches and the core go cold between calls on a loaded machine.
2. Loop jitter of the policy node in real-time mode at each rate, under normal scheduling and under
   SCHED_FIFO (the node's ``rt_priority``): sim_robot (arm_reach, real time, same rate) and the policy node
   (an untrained 2x256 IQL actor for arm_reach) run as processes; after warm-up
   the node's own ``~/status`` is read twice and the difference taken, so only the measured window counts:
   tick-to-tick period, jitter |period - nominal|, the tick's own work (busy), ticks over budget, and the
   in-loop inference latency.

Targets (the deployment issue): ONNX p99 at least 5x lower than torch eager for the MLP policy; node loop
jitter p99 under 10% of the control period at 200 Hz. The machine is shared: the load average is recorded
before and after each part. Results: benchmarks/results/inference.json and inference.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import interleaved, markdown_table, write_results  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLP_TASK = {"name": "bench_mlp", "text": "benchmark", "control_hz": 50.0, "max_episode_steps": 1000,
            "observations": {"state": {"shape": [17]}}, "action": {"dim": 6, "low": -1.0, "high": 1.0}}
IMAGE_TASK = {"name": "bench_image", "text": "benchmark", "control_hz": 20.0, "max_episode_steps": 1000,
              "observations": {"state": {"shape": [7]}, "front": {"shape": [64, 64, 3], "kind": "rgb"}},
              "action": {"dim": 3, "low": -1.0, "high": 1.0}}


def export_iql(spec, out: Path):
    """An IQL learner (default 2x256 networks) for ``spec`` exported to ``out``: (learner, OnnxPolicy)."""
    import torch

    from robot_learning.algos.base import make_algorithm
    from robot_learning.export.command import export_algorithm
    from robot_learning.export.runtime import OnnxPolicy

    algo = make_algorithm("iql", {"obs_keys": list(spec.obs_keys)}, spec).eval()
    gen = np.random.default_rng(0)
    parity = {k: (gen.integers(0, 256, (16, *o.shape), dtype=np.uint8) if o.is_image else
                  gen.normal(size=(16, *o.shape)).astype(np.float32)) for k, o in spec.obs.items()}
    export_algorithm(algo, out, parity)
    torch.set_num_threads(1)
    return algo, OnnxPolicy(out, device="cpu", intra_op_threads=1)


def latency(spec, out: Path, calls: int) -> dict[str, dict[str, float]]:
    """Per-call seconds of every inference path on one observation, interleaved."""
    import torch

    algo, policy = export_iql(spec, out)
    actor = algo.export_actor()
    gen = np.random.default_rng(1)
    one = {k: (gen.integers(0, 256, o.shape, dtype=np.uint8) if o.is_image else
               gen.normal(size=o.shape).astype(np.float32)) for k, o in spec.obs.items()}
    feeds = {k: v[None] for k, v in one.items()}
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    session, names = policy.session, ["action"]

    def eager():
        with torch.no_grad():
            return actor(tensors)

    def inference_mode():
        with torch.inference_mode():
            return actor(tensors)

    cases = {"onnxruntime session.run": lambda: session.run(names, feeds),
             "OnnxPolicy (validated)": lambda: policy(one),
             "torch eager (no_grad)": eager, "torch.inference_mode": inference_mode}
    reference = eager().numpy()[0]
    assert np.allclose(policy(one), reference, atol=1e-4), "exported policy differs from torch"
    times = interleaved(cases, repeats=calls, warmup=max(50, calls // 50))
    return {name: percentiles(ts) for name, ts in times.items()}, cases


def paced(cases: dict, calls: int, period: float) -> dict[str, dict[str, float]]:
    """Per-call seconds when calls are ``period`` apart (a control loop): the caches go cold in between."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(calls):
        for name, fn in cases.items():
            time.sleep(period)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {f"{name}, paced": percentiles(ts) for name, ts in times.items()}


def percentiles(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean()), "max_us": float(a.max()), "n": int(a.size)}


# ------------------------------------------------------------------------------------------ node loop
def node_jitter(policy_file: Path, rate: float, seconds: float, warmup: float, rt_priority: int) -> dict:
    """Run sim_robot + the policy node in real time at ``rate`` and read the node's status over a window.

    ``rt_priority`` > 0: the policy node's ``rt_priority`` parameter (SCHED_FIFO), and sim_robot under ``chrt``
    ten steps lower (a robot driver runs real-time too, below the controller: at equal priority its ~1.5 ms
    camera render delays the controller's ticks on this 2-core machine)."""
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String

    from ros_nodes.common import LATCHED_QOS

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common_args = ["-p", "task:=arm_reach", "-p", "realtime:=true", "-p", f"rate_hz:={rate}"]
    chrt = ["chrt", "-f", str(max(1, rt_priority - 10))] if rt_priority else []
    procs = [subprocess.Popen([*chrt, sys.executable, "-m", "ros_nodes.sim_robot", "--ros-args", *common_args],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, "-m", "ros_nodes.policy", "--ros-args", *common_args,
                               "-p", f"policy:={policy_file}", "-p", "status_period:=0.5",
                               "-p", f"rt_priority:={rt_priority}"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    node = Node(f"jitter_bench_{int(rate)}")
    latest: dict = {}
    node.create_subscription(String, "/policy/status", lambda m: latest.update(json.loads(m.data)), LATCHED_QOS)
    try:
        def spin(until):
            while time.monotonic() < until:
                rclpy.spin_once(node, timeout_sec=0.05)
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a node exited early (codes {[p.poll() for p in procs]})")

        deadline = time.monotonic() + 60
        while not latest.get("decisions", {}).get("sources", {}).get("policy"):
            spin(time.monotonic() + 0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("the policy node never drove (no observations from sim_robot?)")
        spin(time.monotonic() + warmup)
        first = dict(latest)
        spin(time.monotonic() + seconds)
        last = dict(latest)
    finally:
        for p in procs:
            p.send_signal(2)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
    return {"scheduling": f"SCHED_FIFO {rt_priority}" if rt_priority else "normal", **window(first, last, rate)}


def window(first: dict, last: dict, rate: float) -> dict:
    """The statistics of the ticks between two status messages (the node's cumulative histograms subtracted)."""
    from robot_learning.deploy.timing import Histogram

    out: dict = {"rate_hz": rate, "period_ms": 1e3 / rate}
    for key in ("jitter", "period", "busy", "inference"):
        h = Histogram.from_state(last["histograms"][key]).since(Histogram.from_state(first["histograms"][key]))
        for q in (50, 99):
            value = h.percentile(q)
            out[f"{key}_p{q}_ms"] = None if value is None else value * 1e3
        if key == "period":
            out["ticks"] = h.n
    out["over_budget"] = last["loop"]["over_budget"] - first["loop"]["over_budget"]
    out["stop_commands"] = last["decisions"]["sources"]["stop"] - first["decisions"]["sources"]["stop"]
    out["jitter_p99_percent_of_period"] = None if out["jitter_p99_ms"] is None else \
        100 * out["jitter_p99_ms"] / out["period_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and shorter node runs")
    parser.add_argument("--calls", type=int, default=None, help="MLP calls per path (image: a fifth)")
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0], help="node rates (Hz)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per node rate")
    parser.add_argument("--rt-priority", type=int, default=50,
                        help="also measure the node under SCHED_FIFO at this priority (0: normal scheduling only)")
    args = parser.parse_args()
    calls = args.calls or (2000 if args.quick else 10000)
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    from robot_learning.spec import TaskSpec

    results: dict = {"load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["mlp"], cases = latency(TaskSpec.from_dict(MLP_TASK), tmp / "mlp.onnx", calls)
        results["mlp_paced"] = paced(cases, max(100, calls // 20), 0.005)
        results["image"], _ = latency(TaskSpec.from_dict(IMAGE_TASK), tmp / "image.onnx", max(200, calls // 5))
        results["load_average_after_latency"] = os.getloadavg()[0]
        _, _ = export_iql(TaskSpec.load("arm_reach"), tmp / "reach.onnx")
        import rclpy

        rclpy.init()
        try:
            results["node"] = [node_jitter(tmp / "reach.onnx", rate, seconds, 2.0, priority) for rate in args.rates
                               for priority in sorted({0, args.rt_priority})]
        finally:
            rclpy.try_shutdown()
    results["load_average_after"] = os.getloadavg()[0]
    mlp = results["mlp"]
    results["targets"] = {
        "mlp_onnx_p99_speedup_vs_eager":
            mlp["torch eager (no_grad)"]["p99_us"] / mlp["onnxruntime session.run"]["p99_us"],
        "node_jitter_p99_percent_at_200hz": {n["scheduling"]: n["jitter_p99_percent_of_period"] for n in results["node"]
                                             if n["rate_hz"] == 200.0},
    }
    rows = [{"policy": kind, "path": name, **{k: round(v, 2) for k, v in stats.items()}}
            for kind in ("mlp", "mlp_paced", "image") for name, stats in results[kind].items()]
    node_rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in n.items()} for n in results["node"]]
    t = results["targets"]
    sections = [
        ("Batch-1 latency (interleaved; 1 thread each; 'paced': one call every 5 ms, as in a 200 Hz loop)",
         markdown_table(rows, ["policy", "path", "p50_us", "p99_us", "mean_us", "max_us", "n"])),
        ("Policy node, real-time mode (sim_robot at the same rate, in the FIFO rows at FIFO priority 10 lower; window after warm-up)",
         markdown_table(node_rows, ["rate_hz", "scheduling", "period_ms", "ticks", "jitter_p50_ms", "jitter_p99_ms",
                                    "jitter_p99_percent_of_period", "period_p99_ms", "busy_p99_ms", "inference_p50_ms",
                                    "inference_p99_ms", "over_budget", "stop_commands"])),
        ("Targets",
         f"- MLP: onnxruntime p99 is {t['mlp_onnx_p99_speedup_vs_eager']:.1f}x lower than torch eager (target >= 5x)\n"
         "- node jitter p99 at 200 Hz, % of the period (target < 10%): " +
         ", ".join(f"{k} {v:.1f}%" for k, v in t["node_jitter_p99_percent_at_200hz"].items()) + "\n"
         f"- load average: {results['load_average_before']:.1f} before, {results['load_average_after_latency']:.1f} "
         f"after the latency part, {results['load_average_after']:.1f} at the end"),
    ]
    json_path, md_path = write_results("inference", results, sections)
    print(md_path.read_text())
    print(f"results: {json_path}")


if __name__ == "__main__":
    main()
