"""Oracle label noise vs reward quality vs downstream IQL, on a simulated arm task with camera images.

    MUJOCO_GL=egl python -m reward_models.experiments.oracle_noise --out runs/oracle_noise \\
        --task arm_reach --episodes 200 --queries 1000 --noise 0 0.1 0.25 --iql-steps 20000

1. Generate ``<task>`` at tier ``mixed`` with ``sim.generate_dataset`` (or reuse the store in --out).
2. Per noise level: label ``--queries`` uniform single-frame pairs with the oracle labeler (flip
   probability = noise), each level in its own preference dataset; train the ``bt_cnn`` preset (images
   only, RL-VLM-F's CNN ensemble); relabel the store (``vlm_pref_<hash>``); evaluate it: Spearman rho
   of episode returns against the true ``dense`` and ``sparse`` rewards, per-step rho, held-out
   preference accuracy.
3. IQL (``robot-learning train algo=iql``) on the task's true reward and on every relabelled source,
   same steps and seed; the ratio of final success rates is the fraction of true-reward IQL reached.
   With ``--iql-steps 0`` the commands are written to the results instead of run.

Results: ``<out>/results.json`` and a Markdown table ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robot_learning.config import CONFIG_DIR, build, to_plain
from robot_learning.data.store import EpisodeStore
from reward_models.bt_model import BTConfig, BTRewardModel
from reward_models.evaluate import evaluate
from reward_models.labelers import build_labeler
from reward_models.labeling import Sampling, label_store
from reward_models.preferences import PreferenceDataset
from reward_models.relabel import relabel

log = logging.getLogger("oracle_noise")


def make_store(task: str, episodes: int, seed: int, out: Path) -> Path:
    """The experiment's dataset: ``<out>/<task>_mixed_<episodes>_s<seed>.zarr``, generated once.

    Generation runs in a child process: after MuJoCo's EGL renderer has run in a process, the lazy
    import of triton by the first torch optimiser crashes that process (two LLVMs).
    """
    path = out / f"{task}_mixed_{episodes}_s{seed}.zarr"
    if not (path / "zarr.json").exists():
        code = f"import sim; sim.generate_dataset({task!r}, 'mixed', {episodes}, {seed}, {str(path)!r}, overwrite=True)"
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


def reward_for_noise(store_path: Path, noise: float, args: argparse.Namespace) -> dict[str, Any]:
    """Label, train, relabel and evaluate at one noise level; returns its metrics."""
    started = time.time()
    store = EpisodeStore.open(store_path)
    prefs = PreferenceDataset(store, args.out / f"prefs_noise{noise:g}")
    labeler = build_labeler({"name": "oracle", "noise": noise, "seed": args.seed}, store, prefs.root)
    summary = label_store(labeler, prefs, Sampling(queries=args.queries, seed=args.seed), chunk=256)
    preset = to_plain(OmegaConf.load(CONFIG_DIR / "reward_model" / "bt_cnn.yaml"))
    cfg = build(BTConfig, {**preset, "epochs": args.epochs, "seed": args.seed}, where="bt_cnn")
    data = prefs.load()
    model = BTRewardModel.fit(cfg, store, data, prefs.root / "features",
                              provenance={"prefs": str(prefs.root), "labelling_runs": [summary["run_id"]],
                                          "n_queries": len(data)})
    model_dir = model.save(args.out / f"bt_noise{noise:g}")
    store.close()
    source = relabel(store_path, model_dir)
    metrics = evaluate(EpisodeStore.open(store_path), model, model_dir / "eval", prefs_root=prefs.root)
    return {"noise": noise, "queries": args.queries, "source": source, "model_dir": str(model_dir),
            "label_counts": {k: summary[k] for k in ("first", "second", "cant_tell")},
            "heldout_accuracy": model.metrics["heldout_accuracy"], "train_accuracy": model.metrics["train_accuracy"],
            "epochs": model.metrics["epochs"], "spearman_return": metrics["spearman_return"],
            "spearman_return_length_only": metrics["spearman_return_length_only"],
            "spearman_step": metrics["spearman_step"], "plot": metrics["plot"], "seconds": round(time.time() - started)}


def iql_command(task: str, store: Path, source: str, args: argparse.Namespace) -> list[str]:
    """The ``robot-learning train`` command of one IQL run."""
    return ["robot-learning", "train", "algo=iql", f"task={task}", f"dataset={store}", f"dataset.reward={source}",
            f"train.offline_steps={args.iql_steps or 20000}", f"train.eval_every={args.iql_steps or 20000}",
            f"eval.episodes={args.eval_episodes}", "eval.frames=0", "train.progress=false", f"seed={args.seed}",
            f"run_dir={args.out / ('iql_' + source)}"]


def run_iql(command: list[str]) -> dict[str, Any]:
    """Run one IQL training (resuming a killed one) and return its final evaluation."""
    run_dir = Path(command[-1].split("=", 1)[1])
    if not (run_dir / "summary.json").exists() or json.loads((run_dir / "summary.json").read_text())["status"] != "done":
        exe = str(Path(sys.executable).with_name("robot-learning"))
        resume = ["resume=true"] if (run_dir / "checkpoints").exists() else []
        subprocess.run([exe, *command[1:], *resume], check=True)
    final = json.loads((run_dir / "summary.json").read_text())["final_eval"]
    return {k: final.get(k) for k in ("success_rate", "normalized_score", "return_mean", "length_mean")}


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = ["| noise | held-out acc | rho return (dense) | rho return (sparse) | rho step (dense) | IQL success | fraction of true-reward IQL |",
             "|---|---|---|---|---|---|---|"]
    true_iql = results.get("iql", {}).get("true")
    for r in results["levels"]:
        iql = results.get("iql", {}).get(r["source"])
        frac = (iql["success_rate"] / true_iql["success_rate"]) if iql and true_iql and true_iql["success_rate"] else None
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {r['noise']:g} | {fmt(r['heldout_accuracy'])} | {fmt(r['spearman_return'].get('dense'))} | "
                     f"{fmt(r['spearman_return'].get('sparse'))} | {fmt(r['spearman_step'].get('dense'))} | "
                     f"{fmt(iql and iql['success_rate'])} | {fmt(frac)} |")
    if true_iql:
        lines.append(f"\nIQL on the true reward ({results['true_reward']}): success rate {true_iql['success_rate']:.3f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/oracle_noise"))
    parser.add_argument("--task", default="arm_reach")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iql-steps", type=int, default=0, help="IQL gradient steps per run; 0 = write the commands only")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("RL_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    store_path = make_store(args.task, args.episodes, args.seed, args.out)
    true_reward = EpisodeStore.open(store_path).spec.default_reward
    results.update(task=args.task, store=str(store_path), episodes=args.episodes, queries=args.queries,
                   true_reward=true_reward)
    done = {r["noise"]: r for r in results.get("levels", [])}
    for noise in args.noise:
        if noise not in done:
            done[noise] = reward_for_noise(store_path, noise, args)
            results["levels"] = [done[n] for n in sorted(done)]
            results_path.write_text(json.dumps(results, indent=1))
    sources = {"true": true_reward, **{r["source"]: r["source"] for r in results["levels"]}}
    results["iql_commands"] = {name: " ".join(iql_command(args.task, store_path, src, args)) for name, src in sources.items()}
    if args.iql_steps:
        results.setdefault("iql", {})
        for name, src in sources.items():
            results["iql"][name] = run_iql(iql_command(args.task, store_path, src, args))
            results_path.write_text(json.dumps(results, indent=1))
    results_path.write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
