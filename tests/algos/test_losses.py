"""Loss functions against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from robot_learning.algos.common import FiniteGuard, NonFiniteError, ensemble_td_loss, temperature_loss, td_target
from robot_learning.algos.cql import calibrate, cql_gap, sparse_mc_returns
from robot_learning.algos.iql import awr_weights, cosine_lr, expectile_loss, weighted_bc_loss
from robot_learning.algos.sac_n import gradient_diversity_loss
from robot_learning.algos.td3_bc import td3_bc_actor_loss
from robot_learning.data.tensors import TransitionData


def test_expectile_loss():
    # u = -1 weighs 1 - 0.7, u = 2 weighs 0.7: (0.3 * 1 + 0.7 * 4) / 2
    assert float(expectile_loss(torch.tensor([-1.0, 2.0]), 0.7)) == pytest.approx(1.55)
    # tau = 0.5 is half the mean squared error
    diff = torch.randn(10)
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(0.5 * float(diff.square().mean()), rel=1e-6)


def test_awr_weights_are_clipped():
    w = awr_weights(torch.tensor([0.0, 1.0, -1.0, 100.0]), temperature=3.0, max_weight=100.0)
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(3.0), math.exp(-3.0), 100.0]))
    assert not w.requires_grad
    assert float(weighted_bc_loss(torch.tensor([2.0, 1.0]), torch.tensor([-1.0, -3.0]))) == pytest.approx(2.5)


def test_cosine_lr_matches_optax_schedule():
    assert cosine_lr(3e-4, 0, 100) == pytest.approx(3e-4)
    assert cosine_lr(3e-4, 50, 100) == pytest.approx(1.5e-4)
    assert cosine_lr(3e-4, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(3e-4, 500, 100) == pytest.approx(0.0, abs=1e-12)


def test_cql_logsumexp_term_importance_sampled():
    # one critic, one state, one sample of each kind, |A| = 1: log U = log 0.5
    q = lambda v: torch.tensor([[[v]]])  # noqa: E731  (E, B, N)
    gap = cql_gap(q_data=torch.tensor([[0.5]]), q_rand=q(0.0), q_next=q(1.0), q_cur=q(2.0),
                  next_log_pi=torch.tensor([[-1.0]]), cur_log_pi=torch.tensor([[0.0]]), action_dim=1, temp=1.0,
                  importance_sample=True)
    expected = math.log(math.exp(0.0 - math.log(0.5)) + math.exp(1.0 + 1.0) + math.exp(2.0 - 0.0)) - 0.5
    assert float(gap) == pytest.approx(expected, rel=1e-6)


def test_cql_logsumexp_term_plain_and_temperature():
    q = lambda v: torch.tensor([[[v]]])  # noqa: E731
    gap = cql_gap(q_data=torch.tensor([[0.5]]), q_rand=q(0.0), q_next=q(1.0), q_cur=q(2.0),
                  next_log_pi=torch.tensor([[-1.0]]), cur_log_pi=torch.tensor([[0.0]]), action_dim=1, temp=2.0,
                  importance_sample=False)
    expected = 2.0 * math.log(sum(math.exp(v / 2.0) for v in (0.0, 0.5, 1.0, 2.0))) - 0.5
    assert float(gap) == pytest.approx(expected, rel=1e-6)


def test_calql_calibration_bounds_policy_values_by_mc_return():
    q_pi = torch.tensor([[[1.0, -3.0], [0.0, 5.0]]])  # (E=1, B=2, N=2)
    out = calibrate(q_pi, torch.tensor([-1.0, 2.0]))
    torch.testing.assert_close(out, torch.tensor([[[1.0, -1.0], [2.0, 5.0]]]))


def test_sparse_mc_returns_all_failure_rule():
    # episode 0 fails throughout (reward -5 everywhere), episode 1 succeeds at its last step
    reward = torch.tensor([-5.0, -5.0, -5.0, -5.0, 5.0])
    data = TransitionData(obs={"s": torch.zeros(5, 1)}, action=torch.zeros(5, 1), reward=reward,
                          terminal=torch.tensor([False, False, False, False, True]),
                          episode_ends=torch.tensor([3, 5]))
    mc = sparse_mc_returns(data, gamma=0.99, failure_reward=-5.0)
    torch.testing.assert_close(mc[:3], torch.full((3,), -500.0))
    torch.testing.assert_close(mc[3:], torch.tensor([-5.0 + 0.99 * 5.0, 5.0]))
    assert data.mc_return is mc
    plain = sparse_mc_returns(data, gamma=0.5, failure_reward=None)
    torch.testing.assert_close(plain[:3], torch.tensor([-5.0 * 1.75, -5.0 * 1.5, -5.0]))


def test_td3_bc_lambda_normalises_q():
    q_pi = torch.tensor([1.0, -3.0])
    pi, a = torch.tensor([[0.5], [0.0]]), torch.tensor([[0.0], [0.0]])
    loss, lmbda = td3_bc_actor_loss(q_pi, pi, a, alpha=2.5)
    assert float(lmbda) == pytest.approx(2.5 / 2.0)
    assert float(loss) == pytest.approx(-1.25 * (-1.0) + 0.125)


def test_gradient_diversity_equals_pairwise_cosine_sum():
    grads = torch.randn(4, 6, 3)
    unit = grads / grads.norm(dim=-1, keepdim=True)
    pairwise = sum((unit[i] * unit[j]).sum(-1) for i in range(4) for j in range(4) if i != j)
    assert float(gradient_diversity_loss(grads)) == pytest.approx(float(pairwise.mean() / 3), rel=1e-5)


def test_td_and_temperature_losses():
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), 0.9, torch.tensor([10.0, 10.0]))
    torch.testing.assert_close(y, torch.tensor([10.0, 1.0]))
    q = torch.tensor([[10.0, 2.0], [9.0, 1.0]])
    assert float(ensemble_td_loss(q, y)) == pytest.approx((0.0 + 1.0) / 2 + (1.0 + 0.0) / 2)
    log_alpha = torch.tensor(0.5, requires_grad=True)
    loss = temperature_loss(log_alpha, torch.tensor([-1.0, -3.0]), target_entropy=-2.0)
    assert float(loss.detach()) == pytest.approx(-0.5 * (-3.0 + -5.0) / 2)
    loss.backward()
    assert float(log_alpha.grad) == pytest.approx(4.0)


def test_finite_guard_reports_first_bad_update_without_sync_in_watch():
    guard = FiniteGuard("algo")
    guard.watch(1, {"critic_loss": torch.tensor(1.0), "actor_loss": torch.tensor(2.0)})
    guard.check()
    guard.watch(2, {"critic_loss": torch.tensor(1.0), "actor_loss": torch.tensor(float("inf"))})
    guard.watch(3, {"critic_loss": torch.tensor(float("nan")), "actor_loss": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteError, match="algo: actor_loss became non-finite .* at update 2"):
        guard.check()
    restored = FiniteGuard("algo")
    restored.load_state_dict(guard.state_dict(), torch.device("cpu"))
    with pytest.raises(NonFiniteError, match="at update 2"):
        restored.check()
