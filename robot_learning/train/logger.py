"""Run logging: metrics averaged on the device, TensorBoard scalars, progress bars with live metrics.

Learners return metrics as 0-d device tensors. :class:`MetricMeter` sums them on the device every
update and reads them back (one device sync) only when the run logs, so training never waits on the
host between log points.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

#: Metrics shown in a progress bar (the first ones a learner reports, then evaluation).
BAR_METRICS = 3


class MetricMeter:
    """Running sums of 0-d tensors on the device; :meth:`read` returns the means and starts over."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._count += 1

    def read(self) -> dict[str, float]:
        """Means since the last read (one device sync); empty if nothing was added."""
        if not self._count:
            return {}
        values = torch.stack(list(self._sums.values())).cpu().tolist()
        out = {k: v / self._count for k, v in zip(self._sums, values)}
        self._sums, self._count = {}, 0
        return out


class RunLogger:
    """TensorBoard scalars under ``<run_dir>/tb`` and one tqdm bar per phase."""

    def __init__(self, run_dir: Path, show_progress: bool, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)
        self.show_progress = show_progress
        self.bar: tqdm | None = None
        self._bar_values: dict[str, float] = {}

    def start_phase(self, phase: str, total: int, initial: int, unit: str) -> None:
        self.close_bar()
        self._bar_values = {}
        self.bar = tqdm(total=total, initial=initial, desc=phase, unit=unit, dynamic_ncols=True,
                        disable=not self.show_progress, leave=True)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """Write ``prefix/<name>`` scalars at ``step`` and show the first few in the progress bar."""
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)
        if values and self.bar is not None:
            self._bar_values.update({f"{prefix}/{k}": v for k, v in list(values.items())[:BAR_METRICS]})
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in self._bar_values.items()}, refresh=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        self.writer.close()
