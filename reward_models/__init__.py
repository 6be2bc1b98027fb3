"""Rewards from VLM feedback: labelers -> preferences -> Bradley-Terry reward model -> relabelled store.

Modules, in data-flow order (docs/rewards.md explains the choices):

- ``labelers/``: ``oracle`` (sim ground truth + noise), ``clip`` (open_clip zero-shot), ``chat_vlm``
  (OpenAI-compatible VLM, RL-VLM-F two-stage prompt; ``chat_client`` does HTTP, retries, rate limit, cache)
- ``pairs``: uniform and disagreement pair sampling; ``labeling``: resumable labelling runs
- ``preferences``: the preference dataset beside a store (``<store>.prefs/``)
- ``clip_encoder``, ``features``: open_clip loading without downloads, cached frame embeddings, model inputs
- ``nets``: batched ensembles (grouped-conv CNN, ensemble linear layers)
- ``model``: the saved per-frame model (scoring, next-observation relabelling, online callable)
- ``bt_model``: Bradley-Terry reward ensemble; ``success``: RoboFuME success classifier
- ``relabel``: write ``data/reward/<vlm_pref|success_clf>_<hash>``; ``evaluate``: rho, accuracy, plots
- ``verbs/``: the ``label`` and ``reward train|relabel|eval`` CLI verbs; ``experiments/``: measurements
"""
