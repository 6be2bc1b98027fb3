"""The safety layer: each protection can fail its test if it stops working."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.deploy.safety import SafetyConfig, SafetyLayer
from tests.helpers import toy_spec

SPEC = toy_spec(action={"dim": 2, "low": [-1.0, -0.5], "high": [1.0, 0.5], "max_delta": [0.2, 0.2]})


def layer(**cfg) -> SafetyLayer:
    return SafetyLayer(SPEC, SafetyConfig(**cfg))


def test_limits_clip_then_rate_limit():
    s = layer()
    d = s.step(np.array([5.0, -5.0]), obs_age_s=0.01)
    assert d.source == "policy" and d.clipped and d.rate_limited
    assert np.allclose(d.action, [0.2, -0.2])          # clipped to [1, -0.5], then 0.2 per step from 0
    for _ in range(10):
        d = s.step(np.array([5.0, -5.0]), obs_age_s=0.01)
    assert np.allclose(d.action, [1.0, -0.5]) and not d.rate_limited


def test_watchdog_stops_on_stale_or_missing_observations():
    s = layer(max_obs_age_s=0.1)
    assert s.step(np.array([0.1, 0.1]), obs_age_s=None).reason.startswith("watchdog: no observation yet")
    s.step(np.array([0.1, 0.1]), obs_age_s=0.05)
    d = s.step(np.array([0.1, 0.1]), obs_age_s=0.25)
    assert d.source == "stop" and np.all(d.action == 0) and "250 ms old" in d.reason
    hold = layer(max_obs_age_s=0.1, stop_action="hold")
    hold.step(np.array([0.1, 0.1]), obs_age_s=0.05)
    assert np.allclose(hold.step(np.array([0.9, 0.9]), obs_age_s=1.0).action, [0.1, 0.1])


def test_estop_latches_until_explicit_rearm_with_clear_signal():
    s = layer()
    s.step(np.array([0.2, 0.2]), obs_age_s=0.01)
    s.set_estop(True)
    assert s.step(np.array([0.2, 0.2]), obs_age_s=0.01).source == "stop"
    assert s.rearm() == (False, "e-stop signal still asserted")
    s.set_estop(False)                                   # clearing the signal alone does not restart motion
    d = s.step(np.array([0.2, 0.2]), obs_age_s=0.01)
    assert d.source == "stop" and "re-arm required" in d.reason
    assert s.rearm() == (True, "re-armed")
    d = s.step(np.array([0.5, 0.5]), obs_age_s=0.01)
    assert d.source == "policy" and np.allclose(d.action, [0.2, 0.2])   # resumes from 0, rate-limited
    # teleop cannot bypass a latched e-stop either
    s.set_estop(True)
    assert s.step(None, obs_age_s=0.01, teleop_action=np.array([0.1, 0.0]), teleop_age_s=0.0).source == "stop"


def test_teleop_overrides_and_deadman_gates_the_policy():
    s = layer(deadman=True, teleop_timeout_s=0.2)
    assert s.step(np.array([0.1, 0.1]), obs_age_s=0.01).reason == "deadman released"
    d = s.step(np.array([0.1, 0.1]), obs_age_s=0.01, deadman_held=True, deadman_age_s=0.05)
    assert d.source == "policy"
    assert s.step(np.array([0.1, 0.1]), obs_age_s=0.01, deadman_held=True, deadman_age_s=0.5).source == "stop"
    d = s.step(np.array([0.1, 0.1]), obs_age_s=0.01, teleop_action=np.array([-0.1, 0.0]), teleop_age_s=0.01)
    assert d.source == "teleop" and np.allclose(d.action, [-0.1, 0.0])


def test_invalid_commands_stop_and_bad_config_is_rejected():
    s = layer()
    assert s.step(np.array([np.nan, 0.0]), obs_age_s=0.01).reason.startswith("invalid policy command")
    assert s.step(np.array([0.1]), obs_age_s=0.01).source == "stop"
    with pytest.raises(ValueError, match="stop_action"):
        SafetyConfig(stop_action="brake")
    with pytest.raises(ValueError, match="max_delta: expected 2 values"):
        SafetyLayer(SPEC, SafetyConfig(max_delta=[0.1]))
