"""The ``robot-learning dataset`` verbs: info, verify, plot, convert, merge and drop-episodes.

Each module holds a library function that does the work and a ``run(cfg)`` that turns the verb's Hydra
config (``configs/dataset_<verb>.yaml``) into a call and prints the result.
"""
