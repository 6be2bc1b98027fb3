"""Uni-O4: its losses on hand-computed values, the OPE gate, the stage schedule, exact resume across stages, the
hand-off to online PPO and the export variants."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.unio4.dynamics import (DynamicsEnsemble, gaussian_nll, holdout_mse, rollout_q_scores,
                                                 soft_clamp)
from robot_learning.algos.unio4.policies import (GaussianPolicyEnsemble, bppo_loss, clip_grad_norm_per_member_,
                                                 ensemble_bc_loss, normalized_advantage, ope_gate, replace_members_)
from robot_learning.config import ConfigError
from robot_learning.data.rollout import synthetic_rollout
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "u", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [4]}}, "action": {"dim": 2, "low": -2.0, "high": 2.0}})
#: A tiny schedule that crosses every stage boundary (holdout checks every 4 dynamics steps, OPE every 3 BPPO steps).
TINY = {"critic_steps": 4, "dynamics_steps": 5, "bc_steps": 4, "bppo_steps": 7, "eval_step": 3,
        "ope_rollout_steps": 3, "ope_batch_size": 6, "q_hidden": [16], "value_hidden": [16], "hidden": [8, 8],
        "dynamics_hidden": [8], "dynamics_weight_decay": [1e-4, 1e-4], "batch_size": 12, "dynamics_batch_size": 8,
        "update_epochs": 2, "num_minibatches": 2}


def _data(n: int = 48) -> TransitionData:
    gen = torch.Generator().manual_seed(0)
    terminal = torch.zeros(n, dtype=torch.bool)
    terminal[15] = True
    return TransitionData(obs={"state": torch.randn(n, 4, generator=gen) * 2 + 1},
                          action=torch.rand(n, 2, generator=gen) * 4 - 2, reward=torch.randn(n, generator=gen),
                          terminal=terminal, episode_ends=torch.tensor([16, 32, 48]))


def _learner(**overrides):
    algo = make_algorithm("unio4", {**TINY, **overrides}, SPEC)
    return algo, algo.prepare(_data())


def _run(algo, data, updates: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [algo.update(data.sample(12, generator=gen)) for _ in range(updates)]


# ------------------------------------------------------------------------------------------------ losses
def test_bc_loss_rewards_out_predicting_the_best_other_member():
    # K = 3 members, 2 samples; per member i: mean_n[-lp_i - 0.1 (lp_i - max_{j != i} lp_j)]
    #   member 0: others' max (-2, -0.5): (1 - 0.1 * 1 + 2 + 0.1 * 1.5) / 2 = 1.525
    #   member 1: others' max (-1, -1):   (3 + 0.2 + 0.5 - 0.05) / 2      = 1.825
    #   member 2: others' max (-1, -0.5): (2 + 0.1 + 1 + 0.05) / 2        = 1.575
    log_prob = torch.tensor([[-1.0, -2.0], [-3.0, -0.5], [-2.0, -1.0]], requires_grad=True)
    loss = ensemble_bc_loss(log_prob, alpha=0.1)
    torch.testing.assert_close(loss, torch.tensor(1.525 + 1.825 + 1.575))
    loss.backward()
    # the others' term carries no gradient: d/d lp_i = -(1 + alpha) / N for every entry
    torch.testing.assert_close(log_prob.grad, torch.full((3, 2), -1.1 / 2))


def test_bc_loss_without_diversity_is_plain_behaviour_cloning():
    log_prob = torch.tensor([[-1.0, -2.0], [-3.0, -0.5]])
    torch.testing.assert_close(ensemble_bc_loss(log_prob, alpha=0.0), torch.tensor(1.5 + 1.75))


def test_bppo_loss_is_the_clipped_surrogate_per_member():
    # eps = 0.2. member 0: rho (0.5, 1, 1.5), A (1, -1, 2): min terms 0.5, -1, 2.4 -> -mean = -0.6333
    #            member 1: rho (0.5, 2, 1), A (-1, -1, 0): min terms -0.8, -2, 0 -> -mean = 0.9333
    rho = torch.tensor([[0.5, 1.0, 1.5], [0.5, 2.0, 1.0]])
    advantage = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 0.0]])
    old = torch.randn(2, 3)
    loss = bppo_loss(old + rho.log(), old, advantage, clip=0.2)
    torch.testing.assert_close(loss, torch.tensor(-1.9 / 3 + 2.8 / 3))


def test_bppo_gradient_vanishes_outside_the_clip_range():
    log_prob = torch.tensor([[math.log(1.5), math.log(0.5)]], requires_grad=True)
    bppo_loss(log_prob, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), clip=0.2).backward()
    torch.testing.assert_close(log_prob.grad, torch.zeros(1, 2))


def test_advantage_is_normalised_per_policy():
    q = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    advantage = normalized_advantage(q, torch.zeros(3))
    torch.testing.assert_close(advantage[0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(advantage[1].mean(), torch.tensor(0.0))
    torch.testing.assert_close(advantage[1].std(), torch.tensor(1.0))


def test_ope_gate_accepts_only_strict_improvements():
    accept = ope_gate(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0]))
    assert accept.tolist() == [False, False, True]
    old, new = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    replace_members_([old], [new], accept)
    assert old[:2].eq(0).all() and old[2].eq(1).all()


def test_gate_replaces_old_policies_of_accepted_members(monkeypatch):
    algo, data = _learner()
    _run(algo, data, 13, seed=1)  # critic, dynamics and BC done
    monkeypatch.setattr(algo, "ope", lambda: torch.tensor([1.0, 1.0, 1.0, 1.0]))
    algo.update(data.sample(12))  # BPPO step 0: pi_old <- BC, best <- 1
    old_before = copy.deepcopy(algo.old_policies.state_dict())
    monkeypatch.setattr(algo, "ope", lambda: torch.tensor([2.0, 0.5, 1.0, 3.0]))
    algo.update(data.sample(12))
    algo.update(data.sample(12))  # step 2: (2 + 1) % eval_step == 0 -> gate
    assert algo.ope_best.tolist() == [2.0, 1.0, 1.0, 3.0]
    assert algo.ope_accepted.tolist() == [1, 0, 0, 1]
    assert int(algo.selected) == 3
    new, old = algo.policies.state_dict(), algo.old_policies.state_dict()
    for key in new:
        for k, accepted in enumerate([True, False, False, True]):
            expected = new[key][k] if accepted else old_before[key][k]
            assert torch.equal(old[key][k], expected), (key, k)


def test_per_member_gradient_clip():
    p = torch.nn.Parameter(torch.zeros(2, 3))
    p.grad = torch.tensor([[3.0, 0.0, 4.0], [0.06, 0.0, 0.08]])
    norms = clip_grad_norm_per_member_([p], max_norm=0.5)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.1]))
    torch.testing.assert_close(p.grad.norm(dim=1), torch.tensor([0.5, 0.1]), atol=1e-6, rtol=1e-5)


def test_policy_parameterisation_bounds_mean_and_log_std():
    policy = GaussianPolicyEnsemble(3, 2, [4], 2, act="relu", log_std_min=-5.0, log_std_max=0.0,
                                    init="orthogonal_unit")
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.copy_(torch.tensor([[[0.0, 100.0, 0.0, -100.0]], [[1.0, 0.0, 100.0, 0.0]]]))
    mean, log_std = policy(torch.randn(5, 3))
    torch.testing.assert_close(mean[0, 0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(log_std[0, 0], torch.tensor([-2.5, -5.0]))
    torch.testing.assert_close(mean[1, 0], torch.tensor([math.tanh(1.0), 0.0]))
    torch.testing.assert_close(log_std[1, 0], torch.tensor([0.0, -2.5]))


# ------------------------------------------------------------------------------------------------ dynamics / OPE
def test_gaussian_nll_and_holdout_mse():
    mean = torch.tensor([[[1.0, 2.0]]])
    logvar = torch.tensor([[[0.0, math.log(4.0)]]])
    target = torch.tensor([[0.0, 0.0]])
    # ((1)^2 * 1 + 0) and ((2)^2 / 4 + log 4), averaged over the 2 dimensions
    torch.testing.assert_close(gaussian_nll(mean, logvar, target), torch.tensor([(1.0 + 1.0 + math.log(4.0)) / 2]))
    torch.testing.assert_close(holdout_mse(mean, target), torch.tensor([2.5]))


def test_soft_clamp_keeps_log_variance_inside_its_bounds():
    x = torch.tensor([-100.0, 0.0, 100.0])
    y = soft_clamp(x, torch.tensor(-10.0), torch.tensor(0.5))
    assert bool((y >= -10.0).all() and (y <= 0.5 + 1e-4).all())  # the lower softplus may overshoot by e^-10.5
    torch.testing.assert_close(y[1], torch.tensor(0.5 - math.log1p(math.exp(0.5))), atol=1e-4, rtol=1e-4)


def test_members_keep_their_best_holdout_weights_and_elites_are_the_best():
    model = DynamicsEnsemble(2, 1, [4], ensemble_size=3, num_elites=2, weight_decays=[0.0, 0.0])
    first = copy.deepcopy(model.layers.state_dict())
    assert model.keep_improved_(torch.tensor([1.0, 1.0, 1.0]), 0.01).all()
    with torch.no_grad():
        for p in model.layers.parameters():
            p.add_(1.0)
    improved = model.keep_improved_(torch.tensor([0.5, 0.995, 2.0]), 0.01)  # 50%, 0.5% (< 1%), worse
    assert improved.tolist() == [True, False, False]
    model.finish_training_()
    for key, value in model.layers.state_dict().items():
        torch.testing.assert_close(value[0], first[key][0] + 1.0)
        torch.testing.assert_close(value[1:], first[key][1:])
    assert model.elites.tolist() == [0, 1]


def test_rollout_scores_average_q_until_termination():
    class Model:
        """s' = s + 1; the rollout of the second policy terminates after its first step."""

        def step(self, obs, action):
            return obs + 1.0, (action[:, 0] > 0)

    start = torch.zeros(2, 3, 1)
    policy = lambda s: torch.stack([-torch.ones_like(s[0]), torch.ones_like(s[1])])  # noqa: E731
    scores = rollout_q_scores(policy, lambda s, a: s[:, 0], Model(), start, horizon=4)
    # policy 0: Q = s_t = 0, 1, 2, 3 -> 1.5; policy 1: only s_0 = 0 counts
    torch.testing.assert_close(scores, torch.tensor([1.5, 0.0]))


# ------------------------------------------------------------------------------------------------ schedule
def test_stages_run_in_order_and_the_schedule_is_the_offline_length():
    algo, data = _learner()
    assert algo.offline_length() == 20
    stages = [float(m["stage"]) for m in _run(algo, data, 20, seed=2)]
    assert stages == [0.0] * 4 + [1.0] * 5 + [2.0] * 4 + [3.0] * 7
    with pytest.raises(ConfigError, match="past the schedule"):
        algo.update(data.sample(12))
    assert int(algo.ope_accepted.sum()) >= 0 and bool(torch.isfinite(algo.ope_last).all())


def test_bc_filter_clones_only_the_steps_on_the_way_to_a_success():
    """is_filter_bc: positive return-to-go of the raw reward. Episode 2 (rows 16-31) succeeds at row 27; its rows
    up to 27 are kept, the steps after it and the episodes without reward are not, whatever the reward transform."""
    data = _data()
    sparse = torch.zeros(48)
    sparse[27] = 1.0
    data = data.with_reward(sparse)
    algo = make_algorithm("unio4", {**TINY, "bc_filter_positive_return": True, "reward_scale": 10.0,
                                    "reward_bias": -5.0}, SPEC)
    algo.prepare(data)
    cloned = {tuple(a) for a in algo.bc_batch(data.sample(512)).action.tolist()}
    assert cloned == {tuple(a) for a in data.action[16:28].tolist()}
    unfiltered = make_algorithm("unio4", TINY, SPEC)
    unfiltered.prepare(data)
    batch = data.sample(12)
    assert unfiltered.bc_batch(batch) is batch
    with pytest.raises(ConfigError, match="bc_filter_positive_return.*no reward > 0"):
        algo.prepare(data.with_reward(torch.zeros(48)))


def test_bf16_runs_every_stage_with_float32_model_outputs():
    """Mixed precision through the whole schedule (critic, dynamics with holdout checks, BC, BPPO with OPE gates):
    finite losses, and the dynamics model's predictions (mean, log-variance) stay float32."""
    algo, data = _learner(precision="bf16")
    metrics = _run(algo, data, algo.offline_length(), seed=0)
    algo.check_finite()
    assert all(math.isfinite(float(v)) for m in metrics for v in m.values())
    with algo.mixed_precision():
        mean, logvar, terminal = algo.dynamics(torch.randn(6, 4), torch.randn(6, 2))
    assert mean.dtype == logvar.dtype == terminal.dtype == torch.float32


def test_run_rejects_an_offline_length_other_than_the_schedule():
    from robot_learning.train.config import LoopConfig, OnlineConfig, RunConfig
    from robot_learning.train.resolve import check_phases

    algo, _ = _learner()
    loop = LoopConfig(offline_steps=7, online_steps=0, eval_every=0, log_every=1, checkpoint_every=1,
                      keep_checkpoints=1, progress=False)
    online = OnlineConfig(1, False, "auto", {}, 0.5, None, 0, 10, 1.0, 0, 0, 0.0, 0.5, 64, None, {})
    cfg = RunConfig(seed=0, device="cpu", run_dir=None, name=None, resume=False, init=None, dataset=None, train=loop,
                    online=online, eval=None)
    with pytest.raises(ConfigError, match="expected train.offline_steps=20 or 0"):
        check_phases(cfg, algo, object())


def _round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("stop", [6, 15], ids=["mid-dynamics", "mid-bppo"])
def test_resume_across_stages_is_bit_identical(stop):
    algo, data = _learner()
    _run(algo, data, stop, seed=3)
    saved = _round_trip({"state_dict": algo.state_dict(), "training_state": algo.training_state()})
    fresh = make_algorithm("unio4", TINY, SPEC)
    fresh.load_state_dict(saved["state_dict"])
    fresh.load_training_state(saved["training_state"])
    fresh_data = fresh.prepare(_data())
    for learner, d in ((algo, data), (fresh, fresh_data)):
        torch.manual_seed(99)
        _run(learner, d, 20 - stop, seed=4)
        learner.begin_phase("online")
        learner.update(synthetic_rollout(SPEC, num_steps=8, num_envs=2, obs_keys=learner.obs_keys, seed=5))
    original, restored = algo.state_dict(), fresh.state_dict()
    for key in original:
        assert torch.equal(original[key], restored[key]), key


# ------------------------------------------------------------------------------------------------ hand-off, export
def test_hand_off_starts_ppo_from_the_selected_member_and_the_offline_value():
    algo, data = _learner()
    _run(algo, data, 20, seed=6)
    with pytest.raises(ConfigError, match="before the hand-off"):
        algo.update(synthetic_rollout(SPEC, obs_keys=algo.obs_keys))
    k = int(algo.selected)
    assert k == int(algo.ope_last.argmax())
    obs = {"state": torch.randn(5, 4)}
    offline_action = algo.act(obs)
    normalizer = algo.encoder.normalizer.state_dict()
    algo.begin_phase("online")
    for name, value in algo.actor.state_dict().items():
        assert torch.equal(value[0], algo.policies.state_dict()[name][k])
    torch.testing.assert_close(algo.act(obs), offline_action)
    value_net = algo.critic
    algo.update(synthetic_rollout(SPEC, num_steps=8, num_envs=2, obs_keys=algo.obs_keys))
    assert algo.critic is value_net, "the online critic is the offline V"
    for key, value in algo.encoder.normalizer.state_dict().items():
        assert torch.equal(value, normalizer[key]), "the dataset normalisation stays frozen online"
    algo.begin_phase("online")  # a resumed online phase does not hand off again
    assert not torch.equal(algo.actor.state_dict()["net.0.weight"][0], algo.policies.state_dict()["net.0.weight"][k])


def test_online_top3_hand_off_picks_the_best_scored_candidate():
    algo, data = _learner(handoff="online_top3")
    _run(algo, data, 20, seed=7)
    with torch.no_grad():
        algo.ope_last.copy_(torch.tensor([0.3, 0.9, 0.1, 0.5]))
    candidates = algo.online_candidates()
    assert len(candidates) == 3 and algo._candidates == [1, 3, 0]
    algo.choose_online_candidate([1.0, 5.0, 2.0])
    algo.begin_phase("online")
    assert int(algo.selected) == 3
    assert torch.equal(algo.actor.state_dict()["net.0.weight"][0], algo.policies.state_dict()["net.0.weight"][3])
    assert algo.online_candidates() == []


def test_offline_hand_off_scores_no_candidates():
    algo, _ = _learner()
    assert algo.online_candidates() == []


def test_export_variants():
    algo, data = _learner()
    _run(algo, data, 20, seed=8)
    obs = {"state": torch.randn(5, 4)}
    features = algo.encoder(obs)
    means = algo.policies.mode(features)
    with torch.no_grad():
        torch.testing.assert_close(algo.export_actor()(obs), algo.act(obs))
        torch.testing.assert_close(algo.export_actor("member=2")(obs), algo.scaler.from_unit(means[2]))
        torch.testing.assert_close(algo.export_actor("mean")(obs), algo.scaler.from_unit(means.mean(0)))
    with pytest.raises(ConfigError, match="export variant"):
        algo.export_actor("member=9")
    algo.begin_phase("online")
    algo.update(synthetic_rollout(SPEC, num_steps=8, num_envs=2, obs_keys=algo.obs_keys))
    with torch.no_grad():
        torch.testing.assert_close(algo.export_actor()(obs), algo.act(obs))


def test_uni_o4_online_settings():
    algo, _ = _learner()
    c = algo.config
    assert (c.clip_coef, c.actor_lr, c.critic_lr, c.ent_coef, c.obs_norm, c.normalize_rewards) == \
        (0.05, 2e-5, 2e-4, 0.01, "dataset", False)
    with pytest.raises(ConfigError, match="obs_norm"):
        make_algorithm("unio4", {"obs_norm": "running"}, SPEC)


# ------------------------------------------------------------------------------------------------ runtime
TINY_RUN = ["algo=unio4", "algo.critic_steps=6", "algo.dynamics_steps=4", "algo.bc_steps=4", "algo.bppo_steps=4",
            "algo.eval_step=2", "algo.ope_rollout_steps=3", "algo.ope_batch_size=4", "algo.q_hidden=[8]",
            "algo.value_hidden=[8]", "algo.hidden=[8]", "algo.dynamics_hidden=[8]", "algo.dynamics_weight_decay=[0,0]",
            "algo.batch_size=16", "algo.update_epochs=1", "algo.num_minibatches=2", "online.rollout_steps=32",
            "eval.episodes=2", "eval.num_envs=2", "eval.frames=0", "train.progress=false", "train.eval_every=0"]


def test_runtime_offline_stages_then_official_hand_off_then_ppo(tmp_path, caplog):
    """train: the offline schedule, the online scoring of the top-3 members, the hand-off and PPO, in one run."""
    import json
    import logging

    import sim
    from robot_learning.cli import main

    torch.set_num_threads(1)
    store = tmp_path / "maze.zarr"
    sim.generate_dataset("point_maze_umaze", "noisy", 6, 0, store, progress_bar=False)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(["train", *TINY_RUN, "algo.handoff=online_top3", "task=point_maze_umaze", f"dataset={store}",
                     "train.offline_steps=18", "train.online_steps=64", f"run_dir={run_dir}"]) == 0
    assert "hand-off: scored 3 candidate policies online" in caplog.text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["phases"]["offline"]["steps"] == 18 and summary["phases"]["online"]["steps"] == 64
    assert main(["train", *TINY_RUN, "task=point_maze_umaze", f"dataset={store}", "train.offline_steps=17",
                 f"run_dir={tmp_path / 'bad'}"]) != 0
