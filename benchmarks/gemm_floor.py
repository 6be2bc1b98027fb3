"""The matrix-product floor of one training update: how fast any implementation of the same maths could go here.

A learner's update on a CPU is dominated by its matrix products (mm, addmm, bmm, baddbmm, forward and backward).
:func:`capture` records every such product one update dispatches (operator, shapes, strides, dtype) and
:func:`floor_seconds` replays exactly those products back to back on random tensors of the same layout, with
nothing else in between (no Python, no element-wise ops, no optimiser, hot caches). That time is a lower bound on
the update's wall time for this arithmetic on this machine, so ``1 / floor`` bounds the updates per second and
``(1 / floor) / other's updates/s`` bounds the speed-up over another implementation of the same algorithm.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: The products that make up the floor: aten overload packet -> index of the tensor arguments it takes.
PRODUCTS = {torch.ops.aten.mm.default: 2, torch.ops.aten.addmm.default: 3, torch.ops.aten.bmm.default: 2,
            torch.ops.aten.baddbmm.default: 3}


@dataclass(frozen=True)
class Product:
    """One recorded matrix product: the operator and the layout of its tensor arguments."""

    op: torch._ops.OpOverload
    shapes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    dtype: torch.dtype

    @property
    def flops(self) -> int:
        """2 m n k (times the batch for bmm) multiply-adds of the product."""
        a, b = self.shapes[-2], self.shapes[-1]
        return 2 * (a[0] if len(a) == 3 else 1) * a[-2] * a[-1] * b[-1]


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        count = PRODUCTS.get(func)
        if count is not None:
            tensors = args[:count]
            self.products.append(Product(func, tuple(tuple(t.shape) for t in tensors),
                                         tuple(tuple(t.stride()) for t in tensors), tensors[0].dtype))
        return func(*args, **(kwargs or {}))


def capture(update: Callable[[], object], calls: int = 1) -> list[Product]:
    """The matrix products ``calls`` calls of ``update`` dispatch, in order (several calls average over updates
    that differ, e.g. TD3+BC's actor step every second update)."""
    recorder = _Recorder()
    with recorder:
        for _ in range(calls):
            update()
    return recorder.products


def floor_seconds(products: list[Product], threads: int, repeats: int = 20) -> float:
    """Median seconds to run ``products`` back to back at ``threads`` threads (hot caches, nothing else)."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)

    def tensor(shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        # storage for the layout (broadcast operands have stride 0), filled once, viewed with the recorded strides
        size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
        return torch.randn(size, generator=gen, dtype=dtype).as_strided(shape, stride)

    prepared = [(p.op, [tensor(s, st, p.dtype) for s, st in zip(p.shapes, p.strides)]) for p in products]

    def replay() -> None:
        for op, tensors in prepared:
            op(*tensors)

    replay()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        replay()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
