"""Gradient updates per second of the off-policy learners, side by side with d3rlpy 2.8.1.

Shapes of shared/reference/measurements.md: batch 256, 256x256 networks, obs 17, act 6, 1M synthetic
transitions resident in memory, 1 and 2 threads. Two modes per learner: "loop" samples every batch from the
1M transitions (ours: TransitionData index arithmetic; d3rlpy: its own sampler, what ``fit`` does each step)
and "update" reuses one batch (the gradient step alone). d3rlpy pins gymnasium 1.0.0, so it runs in its own
virtualenv (benchmarks/.venvs/d3rlpy, created on first use from the machine's package index) as a worker
process (benchmarks/d3rlpy_worker.py); rounds of ours and d3rlpy's alternate (common.interleaved) so machine
noise hits both. SAC is the SAC-N code with N=2; its cost ratio against N=10 is reported too.
Ours runs in both precisions of the learners' ``precision`` option: fp32 (the papers' arithmetic, d3rlpy's) and
bf16 mixed precision (robot_learning.nn.precision: hidden layers' matrix products in bfloat16, everything else
float32), each eager and under torch.compile; targets are judged per precision.
Our side runs with the training runtime's CPU allocator tuning (robot_learning.train.cpu_alloc, as ``train``
does; ``--no-alloc-tuning`` turns it off); the d3rlpy worker runs as shipped. ``--quick`` (and
``--no-compile``) time eager mode only, so the compiled columns stay empty.
The matrix-product floor (benchmarks/gemm_floor.py) replays the matrix products of our update alone: the fastest
any implementation of the same arithmetic runs here, hence the largest ratio over d3rlpy a target could show.

    python benchmarks/train_speed.py            # 5 rounds, 1 and 2 threads, fp32/bf16 x eager/compiled, ~8 min
    python benchmarks/train_speed.py --quick    # 2 rounds, eager only, ~3 min

Writes benchmarks/results/train_speed.json and .md (train_speed_quick.* with --quick).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common
import gemm_floor
import torch

from robot_learning.algos.base import Algorithm, make_algorithm
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec
from robot_learning.train.cpu_alloc import tune_cpu_allocator

log = logging.getLogger("train_speed")

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venvs" / "d3rlpy"
D3RLPY_REQUIREMENTS = ["torch==2.14.1", "d3rlpy==2.8.1"]
OBS_DIM, ACT_DIM, EPISODE_LEN, BATCH = 17, 6, 1000, 256

#: case -> (our registry name, config overrides for 256x256 networks, d3rlpy counterpart, updates per round)
CASES: dict[str, tuple[str, dict, str, int]] = {
    "iql": ("iql", {}, "iql", 100),
    "td3_bc": ("td3_bc", {}, "td3_bc", 100),
    "calql": ("calql", {}, "calql", 15),
    "sac": ("sac_n", {"num_critics": 2, "hidden": [256, 256]}, "sac", 60),
    "sac_n10": ("sac_n", {"num_critics": 10, "hidden": [256, 256]}, "sac_n10", 30),
}
#: Targets of the issue: minimum updates/s ratio to d3rlpy (loop mode).
TARGETS = {"iql": 2.5, "td3_bc": 2.5, "calql": 3.0}
#: SAC-N (N=10) may cost at most this many SAC (N=2) updates.
SAC_N_COST_TARGET = 1.5
#: Our variants: label -> (torch.compile, precision); the labels of one precision, fastest wins its ratio.
VARIANTS: dict[str, tuple[bool, str]] = {"eager": (False, "fp32"), "compiled": (True, "fp32"),
                                         "bf16": (False, "bf16"), "bf16 compiled": (True, "bf16")}
PRECISIONS = ("fp32", "bf16")
#: Updates captured for the matrix-product floor (averages over updates that differ: TD3+BC's delayed actor).
FLOOR_UPDATES = 4


def synthetic_data(n: int, seed: int = 0) -> TransitionData:
    gen = torch.Generator().manual_seed(seed)
    return TransitionData(obs={"state": torch.randn(n, OBS_DIM, generator=gen)},
                          action=torch.rand(n, ACT_DIM, generator=gen) * 2 - 1,
                          reward=torch.randn(n, generator=gen), terminal=torch.zeros(n, dtype=torch.bool),
                          episode_ends=torch.arange(EPISODE_LEN, n + 1, EPISODE_LEN))


def task() -> TaskSpec:
    return TaskSpec.from_dict({"name": "speed", "text": "benchmark", "control_hz": 20, "max_episode_steps": EPISODE_LEN,
                               "observations": {"state": {"shape": [OBS_DIM]}},
                               "action": {"dim": ACT_DIM, "low": -1.0, "high": 1.0}})


def ours(case: str, data: TransitionData, variant: str) -> tuple[Algorithm, TransitionData]:
    name, overrides, _, _ = CASES[case]
    compile_, precision = VARIANTS[variant]
    algo = make_algorithm(name, {**overrides, "batch_size": BATCH, "compile": compile_, "precision": precision}, task())
    return algo, algo.prepare(data)


def ours_runner(algo: Algorithm, data: TransitionData, threads: int, steps: int, mode: str,
                cpu_log: list[float]) -> Callable[[], None]:
    """k updates of ``algo``; appends the process CPU seconds of each call to ``cpu_log``."""
    fixed = data.sample(BATCH)

    def run() -> None:
        torch.set_num_threads(threads)
        cpu = time.process_time()
        for _ in range(steps):
            algo.update(data.sample(BATCH) if mode == "loop" else fixed)
        algo.check_finite()
        cpu_log.append(time.process_time() - cpu)
    return run


def key(impl: str, case: str, threads: int, mode: str) -> str:
    """The name of one timed case: implementation (ours-<variant> | d3rlpy), learner, threads, mode."""
    return f"{impl}|{case}|{threads}|{mode}"


def best_of(ups: dict[str, float], precision: str, case: str, threads: int, mode: str) -> float | None:
    """Our fastest variant of ``precision`` (eager or compiled) in ``ups``, None if none was timed."""
    rates = [ups[k] for label, (_, p) in VARIANTS.items() if p == precision
             and (k := key(f"ours-{label}", case, threads, mode)) in ups]
    return max(rates) if rates else None


def floor_rows(eager: dict[tuple[str, str], tuple[Algorithm, TransitionData]], threads: list[int],
               ups: dict[str, float]) -> tuple[list[dict], dict[tuple[str, str, int], float]]:
    """Per case and precision (its eager learner and data, as timed) and thread count: our update's matrix
    products replayed alone (gemm_floor), the updates/s bound they give, and how far that bound is from d3rlpy's
    measured rate (the largest speed-up the arithmetic allows)."""
    rows, floors = [], {}
    for (case, precision), (algo, prepared) in eager.items():
        batch = prepared.sample(BATCH)
        products = gemm_floor.capture(lambda algo=algo, batch=batch: algo.update(batch), FLOOR_UPDATES)
        gflop = sum(p.flops for p in products) / FLOOR_UPDATES / 1e9
        for t in threads:
            floor = FLOOR_UPDATES / gemm_floor.floor_seconds(products, t)
            floors[case, precision, t] = floor
            best = best_of(ups, precision, case, t, "loop") or 0.0
            row = {"learner": case, "precision": precision, "threads": t, "GFLOP per update": gflop,
                   "GEMM GFLOP/s": gflop * floor,
                   "floor updates/s": floor, "ours (best)": best, "ours / floor": best / floor}
            d3rlpy = ups.get(key("d3rlpy", case, t, "loop"))
            if d3rlpy:
                row["d3rlpy 2.8.1"] = d3rlpy
                row["largest ratio (floor / d3rlpy)"] = floor / d3rlpy
                if case in TARGETS:
                    row["target"] = f">= {TARGETS[case]}x"
                    row["reachable"] = "yes" if floor / d3rlpy >= TARGETS[case] else "no"
            rows.append(row)
    return rows, floors


# ------------------------------------------------------------------------------------------------ d3rlpy
def ensure_venv() -> Path:
    """The d3rlpy virtualenv's python, created and installed on first use."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import d3rlpy, torch; print(d3rlpy.__version__, torch.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    log.info("creating %s with %s", VENV, " ".join(D3RLPY_REQUIREMENTS))
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *D3RLPY_REQUIREMENTS], check=True)
    subprocess.run(check, check=True)
    return python


class D3rlpyWorker:
    """benchmarks/d3rlpy_worker.py in the d3rlpy virtualenv, driven one request at a time."""

    def __init__(self, n: int):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([str(ensure_venv()), str(HERE / "d3rlpy_worker.py"), str(n)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.info = self._reply()

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("REPLY "):
                return json.loads(line[len("REPLY "):])
        raise RuntimeError(f"d3rlpy worker exited with code {self.proc.wait()}")

    def runner(self, algo: str, threads: int, steps: int, mode: str, cpu_log: list[float]) -> Callable[[], None]:
        def run() -> None:
            self.proc.stdin.write(json.dumps({"algo": algo, "threads": threads, "steps": steps, "mode": mode}) + "\n")
            self.proc.stdin.flush()
            cpu_log.append(self._reply()["cpu_seconds"])
        return run

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, eager only")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, quick 2)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {list(CASES)}")
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help=f"subset of {list(PRECISIONS)}")
    parser.add_argument("--no-d3rlpy", action="store_true", help="ours only")
    parser.add_argument("--name", default=None,
                        help="result file name (default train_speed, train_speed_quick with --quick)")
    parser.add_argument("--no-alloc-tuning", action="store_true",
                        help="run ours without the runtime's glibc malloc tuning (robot_learning.train.cpu_alloc)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rounds = args.rounds or (2 if args.quick else 5)
    threads = [int(t) for t in args.threads.split(",")]
    cases = args.cases.split(",")
    compiled = not (args.quick or args.no_compile)
    precisions = args.precisions.split(",")
    variants = [v for v, (c, p) in VARIANTS.items() if p in precisions and (compiled or not c)]
    torch.manual_seed(0)
    alloc_tuned = False if args.no_alloc_tuning else tune_cpu_allocator()

    data = synthetic_data(args.transitions)
    worker = None if args.no_d3rlpy else D3rlpyWorker(args.transitions)
    runners: dict[str, Callable[[], None]] = {}
    steps_of: dict[str, int] = {}
    cpu: dict[str, list[float]] = {}
    eager: dict[tuple[str, str], tuple[Algorithm, TransitionData]] = {}
    for case in cases:
        steps = max(2, CASES[case][3] // (2 if args.quick else 1))
        built = {label: ours(case, data, label) for label in variants}
        eager |= {(case, VARIANTS[label][1]): built[label] for label in built if not VARIANTS[label][0]}
        for t in threads:
            for mode in ("loop", "update"):
                for label, (algo, prepared) in built.items():
                    name = key(f"ours-{label}", case, t, mode)
                    runners[name] = ours_runner(algo, prepared, t, steps, mode, cpu.setdefault(name, []))
                    steps_of[name] = steps
                if worker is not None:
                    name = key("d3rlpy", case, t, mode)
                    runners[name] = worker.runner(CASES[case][2], t, steps, mode, cpu.setdefault(name, []))
                    steps_of[name] = steps
    log.info("timing %d cases x %d rounds (after 1 warm-up round)", len(runners), rounds)
    times = common.interleaved(runners, repeats=rounds, warmup=1)
    if worker is not None:
        worker.close()

    ups = {name: steps_of[name] / statistics.median(ts) for name, ts in times.items()}
    # updates per CPU-second (warm-up call excluded): robust to time slicing on a busy machine at 1 thread
    ups_cpu = {name: steps_of[name] / statistics.median(ts[1:]) for name, ts in cpu.items()}
    results = {"alloc_tuning": alloc_tuned, "updates_per_second": ups, "updates_per_cpu_second": ups_cpu,
               "seconds": times, "cpu_seconds": cpu}
    rows, update_rows = [], []
    for case in cases:
        for t in threads:
            for mode, table in (("loop", rows), ("update", update_rows)):
                row = {"learner": case, "threads": t}
                row |= {f"ours {label}": ups.get(key(f"ours-{label}", case, t, mode)) or "" for label in VARIANTS}
                d3rlpy = ups.get(key("d3rlpy", case, t, mode))
                row["d3rlpy 2.8.1"] = d3rlpy or ""
                for precision in precisions if d3rlpy else ():
                    row[f"ratio {precision}"] = best_of(ups, precision, case, t, mode) / d3rlpy
                    row[f"ratio {precision} (CPU time)"] = (best_of(ups_cpu, precision, case, t, mode)
                                                           / ups_cpu[key("d3rlpy", case, t, mode)])
                    if case in TARGETS and mode == "loop":
                        row["target"] = f">= {TARGETS[case]}x"
                        row[f"met {precision}"] = "yes" if row[f"ratio {precision}"] >= TARGETS[case] else "no"
                table.append(row)
    floor_table, floors = floor_rows(eager, threads, ups)
    results["floor"] = floor_table
    cost_rows = []
    if "sac" in cases and "sac_n10" in cases:
        for t in threads:
            for impl in [f"ours-{label}" for label in variants] + ["d3rlpy"]:
                sac, sac_n = key(impl, "sac", t, "loop"), key(impl, "sac_n10", t, "loop")
                if sac in ups:
                    ratio = ups[sac] / ups[sac_n]
                    cpu_ratio = ups_cpu[sac] / ups_cpu[sac_n]
                    ours_impl = impl != "d3rlpy"
                    met = max(ratio, cpu_ratio) <= SAC_N_COST_TARGET
                    cost_rows.append({"implementation": impl, "threads": t, "SAC N=2 updates/s": ups[sac],
                                      "SAC-N N=10 updates/s": ups[sac_n], "cost N=10 / N=2": ratio,
                                      "cost (CPU time)": cpu_ratio,
                                      "target": f"<= {SAC_N_COST_TARGET}x" if ours_impl else "",
                                      "met": ("yes" if met else "no") if ours_impl else ""})
            for precision in precisions:
                sac, sac_n = floors["sac", precision, t], floors["sac_n10", precision, t]
                cost_rows.append({"implementation": f"matrix-product floor ({precision})", "threads": t,
                                  "SAC N=2 updates/s": sac, "SAC-N N=10 updates/s": sac_n,
                                  "cost N=10 / N=2": sac / sac_n, "target": f"<= {SAC_N_COST_TARGET}x",
                                  "met": "reachable" if sac / sac_n <= SAC_N_COST_TARGET else "unreachable"})
    results["d3rlpy_worker"] = worker.info if worker is not None else None
    columns = ["learner", "threads", *(f"ours {label}" for label in VARIANTS), "d3rlpy 2.8.1",
               *(f"ratio {p}" for p in precisions), *(f"ratio {p} (CPU time)" for p in precisions), "target",
               *(f"met {p}" for p in precisions)]
    sections = [
        ("Gradient updates per second, sampling included (loop)",
         f"Median of {rounds} interleaved rounds; batch {BATCH}, 256x256, obs {OBS_DIM}, act {ACT_DIM}, "
         f"{args.transitions:,} transitions in memory. Ratios are ours / d3rlpy, per precision the faster of "
         "eager and compiled (d3rlpy computes in fp32; bf16 is our mixed-precision option); the CPU-time ratio "
         "compares updates per process CPU-second, which time slicing on a busy "
         "machine does not distort at 1 thread (at 2 threads it also counts OpenMP spin-waiting). "
         f"Ours {'with' if alloc_tuned else 'without'} the runtime's malloc tuning (train/cpu_alloc.py); "
         + ("eager only (no compiled column). " if not compiled else "") + "\n\n"
         + common.markdown_table(rows, columns)),
        ("Gradient updates per second, update only (one fixed batch)", common.markdown_table(update_rows, columns)),
        ("Matrix-product floor: the fastest this arithmetic runs here",
         f"The matrix products of {FLOOR_UPDATES} of our updates (forward and backward; benchmarks/gemm_floor.py) "
         "replayed back to back with nothing in between: no Python, element-wise ops, optimiser or sampling, hot "
         "caches. 'floor updates/s' bounds any implementation of the same update on this machine; divided by "
         "d3rlpy's measured rate (loop mode) it is the largest speed-up over d3rlpy this arithmetic allows, and "
         "'reachable' compares it with the issue's target.\n\n"
         + common.markdown_table(floor_table, ["learner", "precision", "threads", "GFLOP per update", "GEMM GFLOP/s",
                                              "floor updates/s", "ours (best)", "ours / floor", "d3rlpy 2.8.1",
                                              "largest ratio (floor / d3rlpy)", "target", "reachable"])),
    ]
    if cost_rows:
        sections.append(("Ensemble cost: SAC-N (N=10) vs SAC (N=2), same code",
                         "Loop mode; cost = SAC updates/s over SAC-N updates/s, from wall time and from process CPU "
                         "time (met: both within the target).\n\n"
                         + common.markdown_table(cost_rows, list(cost_rows[0]))))
    json_path, md_path = common.write_results(args.name or ("train_speed_quick" if args.quick else "train_speed"),
                                            results, sections)
    print(md_path.read_text())
    log.info("wrote %s and %s", json_path, md_path)


if __name__ == "__main__":
    main()
