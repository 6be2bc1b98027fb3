"""Batched ensembles are exactly a loop of independent networks."""

import pytest
import torch
from torch import nn

from robot_learning.nn import EnsembleLinear, QEnsemble, VEnsemble, mlp
from robot_learning.nn.init import INIT_SCHEMES


def _as_linear(layer: EnsembleLinear, member: int) -> nn.Linear:
    linear = nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        linear.weight.copy_(layer.weight[member].T)
        linear.bias.copy_(layer.bias[member, 0])
    return linear


def test_ensemble_linear_equals_loop_of_linears():
    layer = EnsembleLinear(5, 7, 3)
    x = torch.randn(5, 11, 7)
    expected = torch.stack([_as_linear(layer, e)(x[e]) for e in range(5)])
    torch.testing.assert_close(layer(x), expected)
    shared = torch.randn(11, 7)
    torch.testing.assert_close(layer(shared), torch.stack([_as_linear(layer, e)(shared) for e in range(5)]))


def test_ensemble_linear_gradients_match_loop():
    layer = EnsembleLinear(3, 4, 2)
    linears = [_as_linear(layer, e) for e in range(3)]
    x = torch.randn(3, 6, 4)
    layer(x).square().sum().backward()
    sum(lin(x[e]).square().sum() for e, lin in enumerate(linears)).backward()
    for e, lin in enumerate(linears):
        torch.testing.assert_close(layer.weight.grad[e], lin.weight.grad.T)
        torch.testing.assert_close(layer.bias.grad[e, 0], lin.bias.grad)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_q_ensemble_equals_independent_mlps(layer_norm):
    q = QEnsemble(5, 2, [8, 8], ensemble_size=4, layer_norm=layer_norm)
    obs, act = torch.randn(9, 5), torch.randn(9, 2)
    out = q(obs, act)
    assert out.shape == (4, 9)
    for e in range(4):
        net = mlp(7, [8, 8], 1, layer_norm=layer_norm)
        ens_layers = [m for m in q.net if isinstance(m, EnsembleLinear)]
        lin_layers = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for src, dst in zip(ens_layers, lin_layers):
                dst.weight.copy_(src.weight[e].T)
                dst.bias.copy_(src.bias[e, 0])
        torch.testing.assert_close(out[e], net(torch.cat([obs, act], -1)).squeeze(-1))
    # per-member inputs (E, N, .) give the same as the shared input broadcast
    torch.testing.assert_close(q(obs.expand(4, 9, 5), act), out)


def test_v_ensemble_shape():
    assert VEnsemble(5, [8], ensemble_size=1)(torch.randn(3, 5)).shape == (1, 3)


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_members_initialised_independently(scheme):
    layer = EnsembleLinear(3, 16, 16)
    layer.reset_parameters(scheme)
    assert not torch.equal(layer.weight[0], layer.weight[1])


def test_init_schemes():
    layer = EnsembleLinear(2, 8, 8)
    layer.reset_parameters("orthogonal")
    w = layer.weight[0]
    torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(8), atol=1e-5, rtol=1e-5)
    layer.reset_parameters("edac_critic")
    assert torch.all(layer.bias == 0.1)
    layer.reset_parameters("edac_critic", output=True)
    assert layer.weight.abs().max() <= 3e-3
    with pytest.raises(ValueError, match="init scheme"):
        layer.reset_parameters("nope")


@pytest.mark.parametrize("layer_norm", [False, True])
def test_q_ensemble_multi_equals_repeated_rows(layer_norm):
    """multi(): M actions per state in one pass, the first layer's state part shared, same values and gradients."""
    torch.manual_seed(0)
    q = QEnsemble(5, 3, [16, 16], 2, layer_norm=layer_norm)
    features, actions = torch.randn(4, 5, requires_grad=True), torch.randn(4, 7, 3)
    out = q.multi(features, actions)
    ref = q(features.repeat_interleave(7, dim=0), actions.reshape(28, 3)).view(2, 4, 7)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), [features, *q.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [features, *q.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_frozen_forward_equals_functional_call_with_detached_parameters():
    torch.manual_seed(0)
    q = QEnsemble(5, 3, [16, 16], 3, layer_norm=True)
    features, action = torch.randn(6, 5), torch.randn(6, 3, requires_grad=True)
    for members in (None, slice(0, 1), slice(1, 3)):
        params = {n: p.detach() if members is None else p.detach()[members] for n, p in q.named_parameters()}
        ref = torch.func.functional_call(q, params, (features, action))
        out = q.frozen_forward(features, action, members=members)
        torch.testing.assert_close(out, ref)
        out.sum().backward()
        assert all(p.grad is None for p in q.parameters()) and action.grad is not None
    v = VEnsemble(5, [8], 2)
    torch.testing.assert_close(v.frozen_forward(features), v(features))
