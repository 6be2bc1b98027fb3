"""benchmarks/gemm_floor.py: the matrix products of an update are all recorded, counted and replayable."""

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gemm_floor


def test_capture_records_forward_and_backward_products_with_their_flops():
    layer = nn.Linear(17, 256)
    x = torch.randn(64, 17)

    def update() -> None:
        layer(x).square().mean().backward()

    products = gemm_floor.capture(update)
    # forward addmm (bias broadcast), grad of the input is not needed; grad of the weight is one mm
    ops = sorted(str(p.op) for p in products)
    assert ops == ["aten.addmm.default", "aten.mm.default"]
    assert sum(p.flops for p in products) == 2 * (2 * 64 * 17 * 256)


def test_capture_over_several_updates_and_batched_products():
    a, b = torch.randn(3, 8, 5), torch.randn(3, 5, 4)
    products = gemm_floor.capture(lambda: torch.bmm(a, b), calls=2)
    assert len(products) == 2
    assert products[0].shapes == ((3, 8, 5), (3, 5, 4))
    assert products[0].flops == 2 * 3 * 8 * 5 * 4


def test_floor_replays_the_recorded_layouts():
    weight = torch.randn(256, 17)
    x = torch.randn(32, 17)
    products = gemm_floor.capture(lambda: torch.addmm(torch.zeros(256), x, weight.t()))
    assert products[0].strides == ((1,), (17, 1), (1, 17))  # the transposed weight keeps its layout
    seconds = gemm_floor.floor_seconds(products, threads=1, repeats=3)
    assert 0.0 < seconds < 1.0
