"""Observation normaliser and action scaler: invertible, fitted from data, frozen buffers."""

import pytest
import torch

from robot_learning.nn import ActionScaler, Normalizer


def test_normalizer_fit_and_inverse():
    x = torch.randn(1000, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([5.0, -2.0, 0.0, 1.0])
    norm = Normalizer(4)
    torch.testing.assert_close(norm(x), x)  # identity before fitting
    norm.fit(x, eps=0.0)
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    assert torch.all((y.std(0, unbiased=False) - 1).abs() < 1e-2)
    torch.testing.assert_close(norm.inverse(y), x, atol=1e-4, rtol=1e-5)
    raw_std = norm.std.clone()
    norm.fit(x, eps=1e-3)
    torch.testing.assert_close(norm.std, raw_std + 1e-3)
    assert [name for name, _ in norm.named_buffers()] == ["mean", "std"]
    assert not list(norm.parameters())


def test_action_scaler_round_trip_and_limits():
    low, high = [-2.0, 0.0, 10.0], [2.0, 1.0, 30.0]
    scaler = ActionScaler(low, high)
    torch.testing.assert_close(scaler.to_unit(torch.tensor([low, high])), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    a = torch.rand(50, 3) * (torch.tensor(high) - torch.tensor(low)) + torch.tensor(low)
    torch.testing.assert_close(scaler.from_unit(scaler.to_unit(a)), a)
    u = torch.rand(50, 3) * 2 - 1
    torch.testing.assert_close(scaler.to_unit(scaler.from_unit(u)), u)


def test_action_scaler_rejects_bad_limits():
    with pytest.raises(ValueError, match="low < high"):
        ActionScaler([1.0], [1.0])
