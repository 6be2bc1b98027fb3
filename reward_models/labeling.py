"""A labelling run: sample pairs from a store, ask a labeler in chunks, append answers to the preference dataset.

A run is identified by a hash of what determines its queries and answers: the store's content
(fingerprint), the labeler's provenance, the sampling settings and, for disagreement sampling, the
reward model's hash. Pairs are drawn with a generator seeded by ``seed``, so re-running the same
command recreates the same queries. Answers already in the dataset are skipped. A finished run is
therefore a no-op, and an interrupted one resumes where it stopped: the chunk in flight comes back from
the labeler's response cache, with no new request. Use another ``seed`` to label new pairs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from robot_learning.config import ConfigError
from reward_models.frames import store_fingerprint
from reward_models.labelers.base import CANT_TELL, Labeler
from reward_models.pairs import sample_disagreement, sample_uniform
from reward_models.preferences import PreferenceDataset

log = logging.getLogger(__name__)


@dataclass
class Sampling:
    """How a run picks its queries."""

    # Number of queries (pairs) in the run.
    queries: int = 100
    # uniform, or disagreement (needs the per-step rewards of a trained ensemble).
    method: Literal["uniform", "disagreement"] = "uniform"
    # Steps per segment (1 = single observations, as RL-VLM-F).
    segment: int = 1
    # Disagreement sampling scores this many uniform candidates per query.
    candidates: int = 10
    # Seed of the pair sampling.
    seed: int = 0


def run_id(store_print: dict[str, Any], labeler: dict[str, Any], sampling: Sampling, model_hash: str | None) -> str:
    """12 hex digits naming a labelling run (see the module docstring)."""
    blob = json.dumps({"store": {k: store_print[k] for k in ("n_episodes", "episode_ends_sha", "task")},
                       "labeler": labeler, "sampling": sampling.__dict__, "model": model_hash}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def label_store(labeler: Labeler, prefs: PreferenceDataset, sampling: Sampling, chunk: int = 32,
                member_rewards: np.ndarray | None = None, model_hash: str | None = None) -> dict[str, Any]:
    """Run (or resume) one labelling run; returns a summary (run id, counts of answers)."""
    store = labeler.store
    if sampling.queries < 1 or sampling.segment < 1:
        raise ConfigError(f"label: queries and segment: expected positive integers, found {sampling.queries} and "
                          f"{sampling.segment}")
    rng = np.random.default_rng([sampling.seed, 2])
    if sampling.method == "uniform":
        pairs = sample_uniform(store, sampling.queries, sampling.segment, rng)
    else:
        if member_rewards is None:
            raise ConfigError("label: sampling=disagreement: expected model=<trained reward model dir> (its ensemble "
                              "scores the candidate pairs), found no model")
        pairs = sample_disagreement(store, sampling.queries, sampling.segment, rng, member_rewards, sampling.candidates)
    fingerprint = store_fingerprint(store)
    provenance = labeler.provenance()
    rid = run_id(fingerprint, provenance, sampling, model_hash)
    prefs.start_run({"run_id": rid, "labeler": provenance, "sampling": sampling.__dict__, "model": model_hash,
                     "store": fingerprint})
    done = prefs.answered(rid)
    todo = np.setdiff1d(np.arange(len(pairs)), done)
    if len(done):
        log.info("run %s: %d of %d queries already answered; %s", rid, len(np.intersect1d(done, np.arange(len(pairs)))),
                 len(pairs), "labelling the rest" if len(todo) else "nothing to do (use another seed= for new pairs)")
    counts = {"first": 0, "second": 0, "cant_tell": 0}
    with tqdm(total=len(todo), desc=f"label [{labeler.name}]", unit="query", disable=len(todo) == 0) as bar:
        for start in range(0, len(todo), chunk):
            query = todo[start:start + chunk]
            labels = labeler.label(pairs[query])
            prefs.append(rid, query, pairs[query], labels)
            counts["first"] += int((labels.choice == 0).sum())
            counts["second"] += int((labels.choice == 1).sum())
            counts["cant_tell"] += int((labels.choice == CANT_TELL).sum())
            bar.update(len(query))
    return {"run_id": rid, "queries": len(pairs), "answered_now": int(len(todo)), "already_answered": int(len(pairs) - len(todo)),
            **counts, **labeler.usage(), "prefs": str(prefs.root)}
