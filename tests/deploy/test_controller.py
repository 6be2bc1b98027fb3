"""The policy node's logic without ROS: observation assembly per mode, the gate, safe steps, timing statistics."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_learning.config import ConfigError
from robot_learning.deploy.controller import (HumanInput, Observation, SafePolicy, StreamObservation,
                                              max_delta_values, safety_config)
from robot_learning.deploy.report import EpisodeOutcome, describe, summarize
from robot_learning.deploy.timing import Histogram, LoopStats, Pacer
from robot_learning.export.runtime import OnnxPolicy, PolicyFileError
from robot_learning.spec import TaskSpec
from tests.deploy.policies import constant_policy

MS = 1_000_000


def test_histogram_percentiles_are_within_a_bin_of_the_exact_ones():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=np.log(2e-5), sigma=0.8, size=20000)
    h = Histogram()
    for s in samples:
        h.add(float(s))
    for q in (50, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.02)
    summary = h.summary_ms()
    assert summary["n"] == 20000 and summary["max"] == pytest.approx(samples.max() * 1e3, abs=1e-4)
    assert Histogram().summary_ms()["p50"] is None


def test_histogram_state_round_trips_and_windows_subtract():
    h = Histogram()
    for s in (1e-5, 2e-5, 3e-5):
        h.add(s)
    earlier = Histogram.from_state(h.state())
    assert earlier.n == 3 and earlier.percentile(50) == h.percentile(50)
    for s in (1e-3,) * 10:
        h.add(s)
    window = Histogram.from_state(h.state()).since(earlier)
    assert window.n == 10 and window.percentile(50) == pytest.approx(1e-3, rel=0.02)
    assert window.total == pytest.approx(1e-2)


def test_loop_stats_jitter_and_over_budget():
    loop = LoopStats(0.005)
    for start in (0.0, 0.005, 0.0101, 0.015):
        loop.tick(start)
    loop.done(0.015, 0.0215)                                          # 6.5 ms of work in a 5 ms period
    s = loop.summary()
    assert s["period_ms"]["n"] == 3 and s["over_budget"] == 1
    assert s["jitter_ms"]["max"] == pytest.approx(0.1, rel=0.02)      # 5.1 ms and 4.9 ms periods
    loop.restart()
    loop.tick(5.0)                                                    # after a pause: no period counted
    assert loop.summary()["period_ms"]["n"] == 3


def test_pacer_keeps_whole_periods_from_the_first_tick_and_restarts_after_an_overrun():
    pacer = Pacer(0.01)
    starts = [pacer.wait() for _ in range(6)]
    for i, start in enumerate(starts):
        assert start >= starts[0] + i * 0.01 - 1e-4                    # never early: deadlines on the grid
    time.sleep(0.05)                                                  # an overrun of several periods
    late = pacer.wait()
    assert pacer.wait() >= late + 0.01 - 1e-4                         # no burst to catch up: a fresh schedule


def test_lockstep_acts_once_per_complete_observation_and_stamps_it():
    obs = StreamObservation(["joints", "camera"], lockstep=True)
    obs.push("joints", 10 * MS, 0, {"q": np.ones(2)})
    assert obs.take(0) is None                                        # camera not there yet
    obs.push("camera", 10 * MS, 0, {"img": np.zeros((2, 2, 3))})
    taken = obs.take(0)
    assert taken.stamp == 10 * MS and taken.age_s == 0.0 and set(taken.values) == {"q", "img"}
    assert obs.take(0) is None                                        # answered: nothing new
    obs.push("joints", 20 * MS, 0, {"q": np.ones(2)})
    assert obs.take(0) is None


def test_gate_permits_exactly_its_own_state_even_when_it_arrives_first():
    obs = StreamObservation(["joints"], lockstep=True, gate="gate")
    obs.push("joints", 10 * MS, 0, {"q": np.zeros(1)})
    obs.push("gate", 10 * MS, 0, {})
    assert obs.take(0).stamp == 10 * MS
    obs.push("joints", 20 * MS, 0, {"q": np.ones(1)})                 # the episode's last state: never gated
    obs.push("gate", 30 * MS, 0, {})                                  # the next episode's first state, gated early
    assert obs.take(0) is None                                        # must not act on the 20 ms state
    obs.push("joints", 30 * MS, 0, {"q": np.full(1, 3.0)})
    taken = obs.take(0)
    assert taken.stamp == 30 * MS and taken.values["q"][0] == 3.0
    with pytest.raises(ValueError, match="gate: expected lock-step"):
        StreamObservation(["joints"], lockstep=False, gate="gate")


def test_realtime_takes_the_newest_of_each_stream_and_ages_by_the_oldest():
    obs = StreamObservation(["joints", "camera"], lockstep=False)
    assert obs.take(100 * MS) == Observation(None, None, None)           # nothing yet: the watchdog's "missing"
    obs.push("joints", 90 * MS, 0, {"q": np.zeros(1)})
    obs.push("camera", 60 * MS, 0, {"img": np.zeros(1)})
    obs.push("joints", 95 * MS, 0, {"q": np.ones(1)})
    taken = obs.take(100 * MS)
    assert taken.values["q"][0] == 1.0 and taken.stamp == 95 * MS and taken.age_s == pytest.approx(0.04)
    assert obs.take(100 * MS).stamp == 95 * MS                        # real-time repeats the latest when nothing is new


def test_max_delta_values_conventions():
    assert max_delta_values(None, 3) is None and max_delta_values(0, 3) is None and max_delta_values([0.0], 3) is None
    assert max_delta_values(0.1, 3) == [0.1] * 3 and max_delta_values([0.2], 2) == [0.2, 0.2]
    assert max_delta_values([0.1, 0.2], 2) == [0.1, 0.2]
    with pytest.raises(ConfigError, match="max_delta: expected 0 .* or 3 positive numbers, found \\[0.1, 0.2\\]"):
        max_delta_values([0.1, 0.2], 3)


def test_safe_policy_skips_inference_when_it_would_not_run_and_stops_on_bad_input(tmp_path):
    spec = TaskSpec.load("arm_reach")
    policy = OnnxPolicy(constant_policy(spec, [0.1, 0.0, -0.1], tmp_path / "p.onnx"), device="cpu")
    safe = SafePolicy(policy, spec, safety_config({"max_obs_age_s": 0.1}, spec, where="test"))
    obs = {k: np.zeros(spec.obs[k].shape, np.float32) for k in policy.obs_keys}
    assert np.allclose(safe.step(obs, obs_age_s=0.0).action, [0.1, 0.0, -0.1])
    assert safe.step(obs, obs_age_s=0.5).source == "stop"            # stale: no inference
    human = HumanInput(action=np.array([0.2, 0.2, 0.2], np.float32), action_at=0)
    assert safe.step(obs, obs_age_s=0.0, human=human.ages(50 * MS)).source == "teleop"
    assert safe.inference.n == 1
    bad = {**obs, "ee_pos": np.array([np.nan, 0, 0], np.float32)}
    decision = safe.step(bad, obs_age_s=0.0)
    assert decision.source == "stop" and "ee_pos" in safe.last_error and "NaN" in safe.last_error
    assert safe.stats()["sources"] == {"policy": 1, "teleop": 1, "stop": 2}
    maze = TaskSpec.load("point_maze_umaze")
    with pytest.raises(PolicyFileError, match="action dim: expected 2, found 3"):
        SafePolicy(policy, maze, safety_config({}, maze, where="test"))
    with pytest.raises(ConfigError, match="test: stop_action: expected .zero. or .hold., found .brake."):
        safety_config({"stop_action": "brake"}, spec, where="test")


def test_summary_and_report_lines():
    outcomes = [EpisodeOutcome(True, 12, 1.0), EpisodeOutcome(False, 50, 0.0)]
    loop = LoopStats(0.05)
    for t in (0.0, 0.05, 0.1):
        loop.tick(t)
    s = summarize(outcomes, robot="sim", task="arm_reach", policy="p.onnx", algorithm="iql", mode="real-time",
                  decisions={"sources": {"policy": 62, "teleop": 0, "stop": 0}, "clipped": 1, "rate_limited": 2,
                             "inference_ms": {"n": 62, "p50": 0.01, "p99": 0.02}}, loop=loop.summary())
    assert s["success_rate"] == 0.5 and s["return_mean"] == 0.5 and s["length_mean"] == 31.0
    text = describe(s)
    assert "success 0.50 (1/2), return 0.500" in text and "inference p50 0.010 ms, p99 0.020 ms" in text
    assert "loop jitter p50" in text and "rate-limited 2" in text
    ros = summarize([EpisodeOutcome(True, 3)], robot="ros", task="t", policy="p", algorithm="a", mode="lock-step",
                    decisions={}, loop=None)
    assert ros["return_mean"] is None and "return n/a" in describe(ros) and "not paced" in describe(ros)
