"""Mixed precision: hidden layers in bfloat16, every network's output layer in float32, backward outside autocast."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from robot_learning.nn import QEnsemble, VEnsemble, mlp
from robot_learning.nn.precision import OutputLinear, full_precision, mixed_precision

CPU = torch.device("cpu")
PRODUCTS = {"mm", "addmm", "bmm", "baddbmm"}


class ProductDtypes(TorchDispatchMode):
    """Records (operator, input dtype) of every matrix product dispatched."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in PRODUCTS:
            self.seen.append((name, args[-1].dtype))
        return func(*args, **(kwargs or {}))


def _bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).float()


def test_mlp_hidden_layers_run_in_bf16_and_the_output_layer_in_fp32():
    net = mlp(7, [32, 32], 3)
    x = torch.randn(16, 7)
    with mixed_precision(CPU, "bf16"), ProductDtypes() as products:
        out = net(x)
    assert out.dtype == torch.float32
    assert [d for _, d in products.seen] == [torch.bfloat16, torch.bfloat16, torch.float32]
    # the output layer is exact float32 arithmetic on the (bfloat16) hidden activations
    hidden = net[:-1]
    with mixed_precision(CPU, "bf16"):
        h = hidden(x)
    assert h.dtype == torch.bfloat16
    torch.testing.assert_close(out, nn.functional.linear(h.float(), net[-1].weight, net[-1].bias))
    # and close to the float32 network (bfloat16 keeps ~3 significant digits)
    torch.testing.assert_close(out, net(x), rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("ensemble_size,out", [(1, "v"), (2, "q"), (5, "q")])
def test_ensemble_outputs_are_fp32_in_every_forward(ensemble_size, out):
    s, a = torch.randn(16, 6), torch.randn(16, 2)
    net = VEnsemble(6, [32, 32], ensemble_size) if out == "v" else QEnsemble(6, 2, [32, 32], ensemble_size)
    args = (s,) if out == "v" else (s, a)
    with mixed_precision(CPU, "bf16"):
        values = [net(*args), net.frozen_forward(*args)]
        if out == "q":
            values.append(net.multi(s, torch.randn(16, 4, 2)))
    for v in values:
        assert v.dtype == torch.float32
    torch.testing.assert_close(values[0], net(*args), rtol=3e-2, atol=3e-2)


def test_output_linear_is_an_nn_linear_outside_autocast():
    linear = nn.Linear(5, 3)
    output = OutputLinear(5, 3)
    output.load_state_dict(linear.state_dict())
    x = torch.randn(4, 5)
    assert torch.equal(output(x), linear(x))


def test_fp32_is_plain_float32():
    net = mlp(7, [16], 2)
    x = torch.randn(4, 7)
    with mixed_precision(CPU, "fp32"), ProductDtypes() as products:
        out = net(x)
    assert {d for _, d in products.seen} == {torch.float32}
    assert torch.equal(out, net(x))


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match=r"precision: expected one of \['fp32', 'bf16'\], found 'fp16'"):
        mixed_precision(CPU, "fp16")


def test_backward_outside_autocast_keeps_fp32_gradients_exact():
    """On the CPU a backward pass inside autocast would run the float32 layers' gradient products in bfloat16."""
    layer = OutputLinear(64, 64)
    x = torch.randn(64, 64, dtype=torch.float64)
    reference = x.T @ torch.cos(x @ layer.weight.detach().double().T + layer.bias.detach().double())
    errors = {}
    for where in ("inside", "outside"):
        layer.weight.grad = None
        with mixed_precision(CPU, "bf16"):
            loss = layer(x.float()).sin().sum()
            if where == "inside":
                loss.backward()
            else:
                with full_precision(CPU):
                    loss.backward()
        errors[where] = float((layer.weight.grad.double() - reference.T).abs().max())
    assert errors["outside"] < 1e-4 and errors["inside"] > 1e-2, errors
