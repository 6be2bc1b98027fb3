"""The reward verbs through the real CLI: help, label -> reward train -> relabel -> eval, and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from robot_learning.cli import main
from robot_learning.data.store import EpisodeStore


@pytest.mark.parametrize("verb", [["label"], ["reward", "train"], ["reward", "relabel"], ["reward", "eval"]])
def test_help(verb, capsys):
    assert main([*verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: robot-learning {' '.join(verb)}" in out and "default config" in out and "dataset: null" in out


def last_json(text: str) -> dict:
    return json.loads(text[text.rindex("\n{") + 1:] if "\n{" in text else text[text.index("{"):])


def test_label_train_relabel_eval(reach_store, tmp_path, capsys):
    store = tmp_path / "reach.zarr"
    shutil.copytree(reach_store, store)
    assert main(["label", f"dataset={store}", "labeler=oracle", "labeler.noise=0.1", "queries=40", "chunk=16"]) == 0
    label = last_json(capsys.readouterr().out)
    assert label["answered_now"] == 40 and label["prefs"] == f"{store}.prefs"

    out = tmp_path / "bt"
    assert main(["reward", "train", f"dataset={store}", "reward_model@model=bt_cnn", "model.epochs=2", "model.members=2",
                 f"out={out}"]) == 0
    trained = last_json(capsys.readouterr().out)
    assert trained["model_dir"] == str(out) and trained["n_pairs"] == 40 and trained["heldout_accuracy"] is not None

    assert main(["label", f"dataset={store}", "sampling=disagreement", f"model={out}", "queries=10", "seed=1"]) == 0
    assert last_json(capsys.readouterr().out)["answered_now"] == 10

    assert main(["reward", "relabel", f"dataset={store}", f"model={out}"]) == 0
    source = last_json(capsys.readouterr().out)["source"]
    assert source == trained["source"] and source in EpisodeStore.open(store).reward_sources

    assert main(["reward", "eval", f"dataset={store}", f"model={out}", "episodes=2"]) == 0
    metrics = json.loads((out / "eval" / "reward_eval.json").read_text())
    assert set(metrics["spearman_return"]) == {"dense", "sparse"} and (out / "eval" / "reward_eval.png").exists()
    assert metrics["store_pref_pairs"] >= 10
    capsys.readouterr()

    assert main(["reward", "train", f"dataset={store}", "reward_model@model=success_clf", "model.epochs=1",
                 f"out={tmp_path / 'clf'}"]) == 0
    clf = last_json(capsys.readouterr().out)
    assert clf["source"].startswith("success_clf_") and 0.0 <= clf["precision"] <= 1.0


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["label", f"dataset={tmp_path / 'missing.zarr'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "expected an episode store" in err and "\n" not in err
    assert main(["reward", "train", f"dataset={tmp_path}", "model=bt_gpt"]) == 1
    assert "key 'model': expected one of the presets ['bt_clip', 'bt_cnn', 'success_clf'], found 'bt_gpt'" in capsys.readouterr().err
    assert main(["reward", "relabel", f"dataset={tmp_path}"]) == 1
    assert "key 'model': expected a trained reward model directory" in capsys.readouterr().err
