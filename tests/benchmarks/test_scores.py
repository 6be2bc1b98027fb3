"""benchmarks/scores.py: the claims it reports are computed right and every profile's runs are what it says."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import scores


def evaluation(phase: str, step: int, value: float) -> dict:
    return {"phase": phase, "step": step, "normalized_score": value, "return_mean": value, "success_rate": 0.0}


def summary(offline: float | None, online: list[tuple[int, float]], online_steps: int = 1000) -> dict:
    evals = [evaluation("offline", 100, offline)] if offline is not None else []
    evals += [evaluation("online", step, v) for step, v in online]
    phases = {"online": {"final_eval": evals[-1]}}
    if offline is not None:
        phases["offline"] = {"final_eval": evals[0]}
    return {"phases": phases, "evals": evals, "planned": {"online_steps": online_steps}, "wall_time_s": 1.0}


def test_early_drop_is_the_worst_online_evaluation_in_the_first_tenth():
    s = summary(50.0, [(50, 40.0), (100, 20.0), (200, 5.0), (1000, 90.0)])
    assert scores.early_drop(s) == pytest.approx(30.0)  # 200 is past 10 % of 1000 steps
    # an on-policy learner whose first evaluation lies past the window: its first online evaluation counts
    assert scores.early_drop(summary(50.0, [(512, 45.0), (1024, 10.0)])) == pytest.approx(5.0)
    assert scores.early_drop(summary(None, [(50, 1.0)])) is None


def test_claims_compare_means_over_seeds_and_offline_learners_with_iql():
    rows = [scores.row_of("iql", "hopper", seed, summary(off, [(50, on - 1), (1000, on)]))
            for seed, (off, on) in enumerate([(30.0, 40.0), (30.0, 10.0)])]
    rows += [scores.row_of("famo2o", "hopper", 0, summary(20.0, [(50, 21.0), (1000, 30.0)]))]
    offline_only = {"phases": {"offline": {"final_eval": evaluation("offline", 100, 0.0)}},
                    "evals": [], "planned": {"online_steps": 0}, "wall_time_s": 1.0}
    for algo, value in (("iql", 12.0), ("riql", 30.0), ("iql_rw", 10.0)):
        s = {**offline_only, "phases": {"offline": {"final_eval": evaluation("offline", 100, value)}}}
        rows.append(scores.row_of(algo, "hopper_obs_corrupt", 0, s))
    verdicts = scores.claims(rows)
    by_pair = {(c["algo"], c["task"]): c for c in verdicts["o2o"]}
    assert by_pair["iql", "hopper"]["delta"] == pytest.approx(-5.0)
    assert by_pair["iql", "hopper"]["online_above_offline"] is False
    assert by_pair["iql", "hopper"]["worst_early_drop"] == pytest.approx(21.0)
    assert by_pair["famo2o", "hopper"]["online_above_offline"] is True
    assert verdicts["offline_vs_iql"] == [
        {"task": "hopper_obs_corrupt", "algo": "riql", "score": 30.0, "iql": 12.0, "higher": True},
        {"task": "hopper_obs_corrupt", "algo": "iql_rw", "score": 10.0, "iql": 12.0, "higher": False}]
    text = scores.claims_text(verdicts)
    assert "1 of 2" in text and "iql/hopper (-5.0)" in text
    assert "riql vs iql on hopper_obs_corrupt: 30.0 vs 12.0 (riql higher)" in text
    assert "iql_rw vs iql on hopper_obs_corrupt: 10.0 vs 12.0 (iql_rw not higher)" in text


def test_profiles_runs_and_result_files():
    long = scores.PROFILES["long"]
    iql = scores.run_overrides(long, "iql", "hopper", 0, Path("/data.zarr"))
    assert "train.offline_steps=10000" in iql and "eval.episodes=10" in iql
    assert not any(o.startswith("algo.hidden=") for o in iql)  # the official 256-256 width
    riql = scores.run_overrides(long, "riql", "hopper_obs_corrupt", 0, Path("/data.zarr"))
    assert "train.online_steps=0" in riql and "algo.quantile=0.5" in riql
    unio4 = scores.schedule_overrides("unio4", 10_000)
    stages = {o.split("=")[0]: int(o.split("=")[1]) for o in unio4 if not o.startswith("algo.eval_step")}
    assert sum(stages.values()) == 10_000
    maze = scores.PROFILES["maze"]
    famo2o = scores.run_overrides(maze, "famo2o", "point_maze_medium", 0, Path("/data.zarr"))
    # the maze's sparse-goal recipe (AntMaze's r - 1) at the suite's width, with the budget the stitching needs
    assert {"train.offline_steps=30000", "algo.reward_bias=-1.0", "algo.hidden=[64,64]"} <= set(famo2o)
    rw = scores.run_overrides(scores.PROFILES["weighting"], "iql_rw", "hopper_random_expert", 0, Path("/d.zarr"))
    # a sampler variant is IQL with its locomotion recipe plus the sampler, offline only
    assert {"algo=iql", "task=hopper", "dataset.sampler=rw", "train.online_steps=0",
            "algo.reward_normalize_returns_to=1000.0"} <= set(rw)
    hybrid = scores.run_overrides(scores.PROFILES["gap"], "h2o_hybrid", "arm_reach_gap_weak", 0, Path("/d.zarr"))
    # the paper's protocol in the weak simulator: no offline phase, SAC's dense arm recipe
    assert {"algo=h2o", "task=arm_reach", "train.offline_steps=0", "online.dynamics=weak_motors",
            "dataset.reward=dense"} <= set(hybrid)
    assert scores.result_name("suite") == "scores" and scores.result_name("long") == "scores_long"


def test_bf16_runs_set_the_learners_precision():
    long = scores.PROFILES["long"]
    for algo in ("iql", "unio4"):
        assert "algo.precision=bf16" in scores.run_overrides(long, algo, "hopper", 0, Path("/d.zarr"), "bf16")
        assert not any("precision" in o for o in scores.run_overrides(long, algo, "hopper", 0, Path("/d.zarr")))
    assert scores.result_name("suite", "bf16") == "scores_suite_bf16"
    assert scores.result_name("long", "bf16") == "scores_long_bf16"
