"""Shared benchmark plumbing: side-by-side timing, machine description, JSON + Markdown result files.

Absolute numbers on a shared 2-core machine drift by several percent between runs (measurements.md), so
implementations are compared side by side in one run: :func:`interleaved` runs the cases round-robin so
drift hits all of them alike, and every result file records the machine and the command that made it.
Benchmarks are scripts (``python benchmarks/<name>.py``) and import this module as ``common``: a script's
own directory comes first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Where result files go (``<name>.json`` and ``<name>.md``); ``tmp/`` below it holds cached inputs.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The machine and software a result was measured on."""
    import numpy
    import torch
    import zarr

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "zarr": zarr.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def summary(times: Sequence[float]) -> dict[str, float]:
    """median / mean / min / max / p10 / p90 of per-call seconds."""
    ordered = sorted(times)
    p10, p90 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.1, 0.9))
    return {"median": statistics.median(ordered), "mean": statistics.fmean(ordered), "min": ordered[0],
            "max": ordered[-1], "p10": p10, "p90": p90, "n": len(ordered)}


def interleaved(cases: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every case, run round-robin (a, b, a, b, ...) after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(warmup + repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of ``rows`` (floats with 4 significant digits)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, results: Mapping[str, Any], sections: Sequence[tuple[str, str]],
                  out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``<name>.json`` (machine + results) and ``<name>.md`` (machine + titled Markdown sections)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps({"benchmark": name, "machine": info, "results": results}, indent=2, default=str))
    head = (f"# Benchmark: {name}\n\n`{info['command']}` on {info['cpus']} CPUs ({info['cpu']}), "
            f"Python {info['python']}, numpy {info['numpy']}, torch {info['torch']} ({info['torch_threads']} threads), "
            f"zarr {info['zarr']}, "
            f"{info['date']}, load average {info['load_average_1min']}\n")
    body = "\n".join(f"\n## {title}\n\n{text}\n" for title, text in sections)
    md_path.write_text(head + body)
    return json_path, md_path
