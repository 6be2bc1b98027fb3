"""Experiments that measure the reward stack end to end (each a runnable module)."""
